"""Entity-graph indexing for graph RAG: extraction cache, entity resolution, communities, rendering."""
