"""Everything that changes the index: prepare batches, apply them, run a connector's sync, reconcile.

Contract: `Pipeline` is the only writer of indexed content (apply a prepared or ready batch, delete,
embed pending chunks); `SyncLoop` (pipeline/sync.py) is the one sync loop, which both deployments drive
through a `BatchSink`; `reconcile_source` repairs drift between the stores and the catalog."""
from indexer.pipeline.apply import BatchCounts, Pipeline, ReadyDocument
from indexer.pipeline.prepare import ChunkingOptions, PreparedBatch

__all__ = ["BatchCounts", "ChunkingOptions", "Pipeline", "PreparedBatch", "ReadyDocument"]
