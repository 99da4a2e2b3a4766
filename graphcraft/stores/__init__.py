"""graphcraft.stores"""
