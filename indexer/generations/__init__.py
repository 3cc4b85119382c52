"""Index generations: each (INDEX_VERSION, model, chunking) lives in its own stores and is swapped in whole.

Contract: `state` records the active and building generations in the catalog and opens their stores;
`build.GenerationBuilder` fills a new generation in the background while the active one serves;
`serving.ServingSlot` is what the pipeline and searches reach, repointed by a swap."""
from indexer.generations.state import Generation, generation_status, generation_summary, read_generations

__all__ = ["Generation", "generation_status", "generation_summary", "read_generations"]
