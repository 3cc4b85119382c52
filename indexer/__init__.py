"""Indexer: turns documents into chunks, embeddings and index entries."""
