"""A small, bounded run of bench/scale_1m.py: generation, a real `cairn serve`, HTTP clients, ACL check."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scale_1m

CHUNKS = 5_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder) -> Path:
    data_dir = tmp_path_factory.mktemp("scale")
    scale_1m.generate(data_dir, CHUNKS, vocab_size=400, embedder=embedder, log=lambda *_: None)
    return data_dir


def test_generation_is_deterministic_and_resumable(corpus, embedder):
    state = scale_1m.generate(corpus, CHUNKS, vocab_size=400, embedder=embedder, log=lambda *_: None)
    assert state["batches_done"] == 1 and state["optimized"]
    vocab = scale_1m.Vocabulary.load_or_build(corpus / scale_1m.BENCH_DIR, None, 400)
    first, again = scale_1m.make_batch(vocab, 0, 50), scale_1m.make_batch(vocab, 0, 50)
    assert [c.id for c in first.chunks] == [c.id for c in again.chunks]
    assert (first.vectors == again.vectors).all()
    assert {c.acl for c in first.chunks} != {first.chunks[0].acl}  # documents carry different ACLs
    with pytest.raises(SystemExit):
        scale_1m.generate(corpus, CHUNKS * 2, vocab_size=400, embedder=embedder, log=lambda *_: None)


def test_served_searches_respect_acls_and_report_latency_and_memory(corpus):
    report = scale_1m.serve_bench(corpus, queries=40, clients=4, n_callers=6, single_queries=5, warmup=3,
                                  startup_timeout=300, log=lambda *_: None)
    assert report["errors"] == 0 and report["queries"] == 40
    assert report["hits_checked"] > 0 and report["acl_violations"] == 0
    assert report["empty_results"] < report["queries"]
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert {"embed", "lexical", "dense", "hydrate", "total"} <= set(report["server_stages_ms"])
    memory = report["server_rss_mib"]["after"]
    assert memory["server"]["VmRSS"] > 0 and report["server_cpu_ms_per_query"] > 0
    children = [v for k, v in memory.items() if k.startswith("child ")]  # `cairn serve`'s vector process
    assert children and memory["total_VmRSS"] == memory["server"]["VmRSS"] + sum(c["VmRSS"] for c in children)
    assert report["single_client_latency_ms"]["p50"] > 0
    assert report["client"] == "http.client" and report["client_cpu_ms_per_query"] > 0
    json.dumps(report)  # the report is written as one JSON line


def test_the_httpx_load_generator_sees_the_same_answers(corpus):
    kwargs = {"queries": 12, "clients": 2, "n_callers": 3, "single_queries": 0, "warmup": 0,
              "startup_timeout": 300, "log": lambda *_: None}
    stdlib = scale_1m.serve_bench(corpus, **kwargs)
    httpx = scale_1m.serve_bench(corpus, transport="httpx", **kwargs)
    assert httpx["client"] == "httpx" and httpx["errors"] == stdlib["errors"] == 0
    assert httpx["hits_checked"] == stdlib["hits_checked"] > 0 and httpx["acl_violations"] == 0
    assert httpx["client_cpu_ms_per_query"] > 0


def test_qdrant_local_contrast_is_exact_and_edge_recall_is_measured(corpus, embedder):
    report = scale_1m.qdrant_local_bench(corpus, queries=5, embedder=embedder, log=lambda *_: None)
    assert report["queries"] == 5 and report["local_ms"]["p50"] > 0
    assert 0.5 <= report["edge_recall_at_10"] <= 1.0  # 5k points: below the HNSW threshold, exact


def test_acl_check_counts_a_hit_the_caller_may_not_read(corpus):
    from indexer.catalog import Catalog
    from indexer.catalog.db import make_engine

    catalog = Catalog(make_engine(f"sqlite:///{corpus / 'catalog.sqlite3'}"))
    vocab = scale_1m.Vocabulary.load_or_build(corpus / scale_1m.BENCH_DIR, None, 400)
    chunk = next(c for c in scale_1m.make_batch(vocab, 0, CHUNKS).chunks if "public" not in c.acl)
    outsider = ("tok", "nobody", ["not-a-group"])
    insider = ("tok", "somebody", [chunk.acl[0].split(":", 1)[1]])
    results = [{"index": 0, "ids": [chunk.id]}]
    assert scale_1m.acl_violations(catalog, results, [0], [outsider]) == (1, 1)
    assert scale_1m.acl_violations(catalog, results, [0], [insider]) == (0, 1)
    catalog.engine.dispose()


def test_maintenance_runs_both_layouts_and_leaves_the_corpus_as_it_was(corpus, embedder):
    from indexer.stores.edge import EdgeVectorStore

    def ids() -> set[str]:
        store = EdgeVectorStore(next((corpus / "generations").iterdir()) / "vectors", 384)
        try:
            return store.ids()
        finally:
            store.close()

    before = ids()
    report = scale_1m.maintenance_bench(corpus, 12_000, embedder=embedder, log=lambda *_: None)
    for key in ("in_process", "vector_process"):
        upkeep = report[key]
        assert upkeep["optimize_s"] > 0 and upkeep["searches_during"] >= 1  # 12k new points get an HNSW build
        assert 0 <= upkeep["partial_answers"] <= upkeep["searches_during"] and upkeep["longest_gap_s"] >= 0
    assert ids() == before


def test_layouts_are_compared_on_the_same_queries(corpus):
    rows = scale_1m.layouts_bench(corpus, queries=12, clients=4, rounds=1, log=lambda *_: None)
    assert [r["layout"] for r in rows] == ["in-process", "vector-process", "two servers"]
    for row in rows:
        assert row["errors"] == 0 and row["throughput_qps"] > 0 and row["server_cpu_ms_per_query"] > 0
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p95"]
    assert (corpus.with_name(corpus.name + "-replica") / "catalog.sqlite3").exists()
    again = scale_1m.layouts_bench(corpus, queries=8, clients=2, rounds=1, log=lambda *_: None)
    assert [r["errors"] for r in again] == [0, 0, 0]  # the kept copy gets this run's tokens
