"""Retrieval: query analysis, permission-filtered hybrid search, fusion, reranking and packing."""
