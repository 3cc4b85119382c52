"""Indexer: turns documents into chunks, embeddings and index entries.

The rooms, each with its contract in its `__init__.py`:
  models        the vocabulary every package shares (Document, Chunk, Access, Principal, SkipReason,
                INDEX_VERSION)
  settings      Settings, declared as data (built by the app factory and the Celery app, passed down)
  languages     language detection and the rules that keep a file out of the index
  identifiers   code-aware tokens shared by indexing and query analysis
  locks         per-source locks that die with their holder
  chunking/     Document -> Chunks (tree-sitter symbols, prose sections, ticket sections)
  secrets/      secret files skipped, credentials redacted, redaction counts
  embedding/    the Embedder contract, the fastembed backend, the vector cache, model files
  stores/       the VectorStore and FullTextIndex contracts and their backends (registry by kind)
  catalog/      the catalog's schema, migrations and queries (SQLite or PostgreSQL)
  pipeline/     prepare and apply batches, the one sync loop both deployments drive, reconcile
  generations/  index generations: built in the background, swapped in whole
  backup/       consistent backups of an embedded node and their restore
  services      builds the components above from Settings and owns their lifetime
"""
