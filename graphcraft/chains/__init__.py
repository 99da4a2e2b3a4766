"""graphcraft.chains"""
