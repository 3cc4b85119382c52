"""Everything that changes the index: prepare batches, apply them, run a connector's sync, reconcile.

Contract: `Pipeline` is the only writer of indexed content (apply a prepared or ready batch, delete,
embed pending chunks); `SyncLoop` (pipeline/sync.py) is the one sync loop, which both deployments drive
through a `BatchSink`; `reconcile_source` repairs drift between the stores and the catalog;
`run_permission_pass` applies a source's permissions pass (ACL changes and deletions, nothing embedded)
and `freshness`/`stale_sources` say whose access is too old to serve restricted documents."""
from indexer.pipeline.apply import BatchCounts, Pipeline, ReadyDocument
from indexer.pipeline.permissions import Freshness, PassCounts, freshness, run_permission_pass, stale_sources
from indexer.pipeline.prepare import ChunkingOptions, PreparedBatch

__all__ = ["BatchCounts", "ChunkingOptions", "Freshness", "PassCounts", "Pipeline", "PreparedBatch", "ReadyDocument",
           "freshness", "run_permission_pass", "stale_sources"]
