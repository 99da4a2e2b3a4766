"""graphcraft.tools"""
