"""The index format version: bump it when stored chunks would differ for the same input.

Changelog (newest first):
  3 — full-text layout: one shared tantivy index for all sources (`fulltext/shared/`) instead of one
      per source; BM25 statistics become global. Chunks are unchanged, so the background rebuild
      re-embeds nothing (every vector comes from the embedding cache).
  2 — secrets redacted before chunking (indexer/secret_screen.py), secret files skipped, chunks cut at
      max_chunk_chars, parse deadline with line fallback. The background rebuild redacts the chunks;
      documents' stored text is rewritten by the next full sync (`cairn reindex --all --full`).
  1 — first format: tree-sitter symbol chunks with path/signature headers, all-MiniLM-L6-v2,
      tantivy fields content (identifiers expanded into parts)/symbol/path, Qdrant payload acl/source/path_prefix/kind/language.

A mismatch between this number (or the embedding model, or the chunk size settings) and what built the
serving index generation starts a background build of a new generation while the old one keeps
serving; it is swapped in when complete (indexer/generations.py, indexer/generation_build.py).
"""

INDEX_VERSION = 3
