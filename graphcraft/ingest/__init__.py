"""graphcraft.ingest"""
