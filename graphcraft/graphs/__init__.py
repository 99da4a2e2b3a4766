"""graphcraft.graphs"""
