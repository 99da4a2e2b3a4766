"""graphcraft.guards"""
