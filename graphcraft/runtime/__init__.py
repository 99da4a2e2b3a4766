"""graphcraft.runtime"""
