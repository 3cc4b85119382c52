"""The index format version: bump it when stored chunks would differ for the same input.

Changelog (newest first):
  1 — first format: tree-sitter symbol chunks with path/signature headers, all-MiniLM-L6-v2,
      tantivy fields content (identifiers expanded into parts)/symbol/path, Qdrant payload acl/source/path_prefix/kind/language.

A mismatch between this number and the one recorded in the data directory triggers a rebuild.
"""

INDEX_VERSION = 1
