"""graphcraft.retrievers"""
