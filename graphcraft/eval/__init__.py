"""graphcraft.eval"""
