"""Cairn against two baselines on the SWE-bench dev set, scored exactly like ../shared/eval/run_swebench.py.

Per instance, on the same checkout and in one process:
  cairn  the full pipeline, indexed in-process like `cairn index` and queried like `cairn search --limit 50`
  bm25   the harness's own BM25 over whole files (imported from the harness, not re-implemented)
  naive  what most tools ship: fixed 40-line chunks of the same files BM25 reads, embedded with the same
         model, ranked by cosine to the raw issue text only (no BM25, no rerank); a file ranks by its best chunk

    .venv/bin/python bench/eval_baselines.py --mirror /work/.mirror --repos psf/requests \
        --work /tmp/quality-eval --out /tmp/quality-baselines.jsonl

--work is the harness's --work: its checkouts and its data directory (and so its embedding cache) are
reused. --snapshots DIR keeps a copy of the index after each instance; --from-snapshots then skips the
checkout and the indexing, which makes comparing ranking variants (--variants) a matter of minutes.
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_harness import add_eval_arguments, clone_for, instances_by_repo, load_harness

from indexer.embedding.cache import EmbeddingCache
from indexer.embedding.fastembed_backend import CachedEmbedder, FastEmbedEmbedder
from indexer.services import IndexServices, build_embedder
from indexer.settings import Settings
from retrieval.rerank_features import FeatureReranker, FeatureWeights
from retrieval.search import HybridSearcher, SearchOptions

ROOT = Path(__file__).resolve().parents[1]
NAIVE_LINES = 40
RESULTS = 50  # what the harness asks `cairn search` for
COLUMNS = [f"{m}@{k}" for m in ("acc", "recall", "hit") for k in (1, 5, 10)] + ["mrr"]


@dataclass(frozen=True)
class Variant:
    """A ranking configuration to compare: search options and feature-weight overrides (None: the
    configured reranker as built from the settings)."""

    options: SearchOptions = field(default_factory=SearchOptions)
    weights: dict | None = None


# "default" is what `cairn search` does; each other variant changes one lever against it.
VARIANTS: dict[str, Variant] = {
    "default": Variant(),
    "no-frame": Variant(weights={"path_frame": 0.0}),
    "no-support": Variant(SearchOptions(file_support=0.0)),
    "before": Variant(SearchOptions(file_support=0.0), weights={"path_frame": 0.0}),
    "support.3": Variant(SearchOptions(file_support=0.3)),
    "depth4": Variant(SearchOptions(depth=4)),
    "lexical-heavy": Variant(SearchOptions(fusion_weights=(1.5, 1.0))),
    "dense-heavy": Variant(SearchOptions(fusion_weights=(1.0, 1.5))),
    "no-features": Variant(weights={name: 0.0 for name in FeatureWeights.__dataclass_fields__ if name != "rrf"}),
    "lexical-only": Variant(SearchOptions(fusion_weights=(1.0, 0.0))),
    "dense-only": Variant(SearchOptions(fusion_weights=(0.0, 1.0))),
}


class NaiveBaseline:
    """Fixed-size line windows, one embedding each, cosine only; vectors cached across instances."""

    def __init__(self, embedder: FastEmbedEmbedder, cache_db: Path, extensions: tuple[str, ...]) -> None:
        self.embedder = CachedEmbedder(embedder, EmbeddingCache(create_engine(f"sqlite:///{cache_db}")))
        self.extensions = extensions

    def chunks(self, root: Path, files: list[str]) -> tuple[list[str], list[str]]:
        paths, texts = [], []
        for rel in files:
            if not rel.endswith(self.extensions):
                continue
            try:
                lines = (root / rel).read_bytes()[:2_000_000].decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            for start in range(0, len(lines), NAIVE_LINES):
                text = "\n".join(lines[start:start + NAIVE_LINES])
                if text.strip():
                    paths.append(rel)
                    texts.append(text)
        return paths, texts

    def rank(self, root: Path, files: list[str], query: str) -> tuple[list[str], int]:
        paths, texts = self.chunks(root, files)
        if not texts:
            return [], 0
        vectors, embedded = self.embedder.embed_texts(texts)
        scores = vectors @ self.embedder.embed_query(query)
        ranked: list[str] = []
        seen: set[str] = set()
        for i in np.argsort(-scores, kind="stable"):
            if paths[i] not in seen:
                seen.add(paths[i])
                ranked.append(paths[i])
        return ranked, embedded


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def snapshot_mismatch(snapshot: Path, model_key: str) -> str:
    """'' when the snapshot's index version and model are the current ones, else what they were."""
    from indexer.catalog import Catalog
    from indexer.catalog.db import make_engine
    from indexer.models import INDEX_VERSION

    catalog = Catalog(make_engine(f"sqlite:///{snapshot / 'catalog.sqlite3'}"))
    stored = (catalog.get_meta("index_version"), catalog.get_meta("embedding_model"))
    return "" if stored == (str(INDEX_VERSION), model_key) else f"index version/model {stored}"


def cairn_rank(services: IndexServices, variant: str, query: str, source: str) -> list[str]:
    from indexer.models import Principal
    from retrieval.permissions import Scope
    from retrieval.searcher import build_searcher

    base = build_searcher(services)
    chosen = VARIANTS[variant]
    reranker = base.reranker
    if chosen.weights is not None:
        defaults = {name: getattr(FeatureWeights(), name) for name in FeatureWeights.__dataclass_fields__}
        reranker = FeatureReranker(FeatureWeights(**{**defaults, **chosen.weights}))
    searcher = HybridSearcher(base.catalog, base.fulltext, base.vectors, base.embedder, reranker,
                              candidates=base.candidates, max_hits_per_file=base.max_hits_per_file,
                              options=chosen.options)
    base.close()
    try:
        hits = searcher.search(query, Principal(user="eval", admin=True), Scope(sources=(source,)), limit=RESULTS).hits
    finally:
        searcher.close()
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(hit.path, None)
    return list(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_arguments(ap)
    ap.add_argument("--systems", default="cairn,bm25,naive", help="any of cairn, bm25, naive")
    ap.add_argument("--variants", default="default",
                    help=f"comma-separated search variants for cairn; known: {','.join(VARIANTS)}")
    ap.add_argument("--snapshots", type=Path, default=None, help="copy the index here after each instance")
    ap.add_argument("--from-snapshots", action="store_true",
                    help="use the snapshots instead of checking out and indexing (cairn variants only)")
    ap.add_argument("--baselines", type=Path, action="append", default=[],
                    help="an earlier --out file: its bm25/naive scores (they do not depend on Cairn's code) join "
                         "the table, e.g. with --from-snapshots")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    harness = load_harness(a.harness)
    systems = [s for s in a.systems.split(",") if s]
    variants = [v for v in a.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    if a.from_snapshots and (a.snapshots is None or set(systems) - {"cairn"}):
        raise SystemExit("--from-snapshots needs --snapshots and only the cairn system")

    by_repo = instances_by_repo(a)

    a.work.mkdir(parents=True, exist_ok=True)
    data_dir = a.work / "data"
    embedder = build_embedder(Settings())
    naive = NaiveBaseline(embedder, a.work / "naive-embeddings.sqlite3", harness.TEXT_EXT) if "naive" in systems else None
    names = [f"cairn:{v}" if len(variants) > 1 else "cairn" for v in variants] if "cairn" in systems else []
    names += [s for s in systems if s != "cairn"]
    earlier: dict[str, dict] = {}
    for path in a.baselines:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            earlier.setdefault(row["instance_id"], {}).update({k: row[k] for k in ("bm25", "naive") if k in row})
    names += [s for s in ("bm25", "naive") if s not in names and any(s in row for row in earlier.values())]
    totals = {name: collections.defaultdict(float) for name in names}
    out = a.out.open("w") if a.out else None  # appended to after every instance
    n = 0
    for repo, items in by_repo.items():
        work = a.work / repo.replace("/", "__")
        source = repo.split("/")[1]
        if not a.from_snapshots and not clone_for(repo, a.mirror, work):
            raise SystemExit(f"no clone of {repo} under {a.mirror}")
        for r in items:
            rec: dict = {"instance_id": r["instance_id"], "gold": r["gold_files"]}
            snapshot = a.snapshots / r["instance_id"] if a.snapshots else None
            if not a.from_snapshots:
                harness.checkout(str(work), r["base_commit"])
            if "cairn" in systems:
                index_dir = snapshot if a.from_snapshots else data_dir
                if a.from_snapshots and not (snapshot and snapshot.is_dir()):
                    print(f"skip {r['instance_id']}: no snapshot", file=sys.stderr)
                    continue
                if a.from_snapshots and (stale := snapshot_mismatch(snapshot, embedder.model_name)):
                    # Opening it would drop its stores for a rebuild (a new index version or model).
                    raise SystemExit(f"snapshot {snapshot} was built with {stale}; re-create the snapshots")
                services = IndexServices.open(Settings(data_dir=index_dir), embedder=embedder)
                try:
                    if not a.from_snapshots:
                        t0 = time.time()
                        services.catalog.upsert_source(source, "git", {"location": str(work), "ref": ""}, ["public"])
                        from workers.jobs import run_sync_job

                        counts = run_sync_job(services, source)
                        rec["index"] = {"chunks_embedded": counts.chunks_embedded, "seconds": round(time.time() - t0, 1)}
                    for variant, name in zip(variants, names, strict=True):
                        t0 = time.time()
                        ranked = cairn_rank(services, variant, r["problem_statement"], source)
                        rec[name] = harness.score(ranked, r["gold_files"])
                        rec[f"{name}_top5"] = ranked[:5]
                        rec[f"{name}_search_s"] = round(time.time() - t0, 2)
                finally:
                    services.close()
                if snapshot is not None and not a.from_snapshots:
                    shutil.rmtree(snapshot, ignore_errors=True)
                    shutil.copytree(data_dir, snapshot, ignore=shutil.ignore_patterns("clones"))
            rec.update({k: v for k, v in earlier.get(r["instance_id"], {}).items() if k in names and k not in systems})
            if "bm25" in systems:
                rec["bm25"] = harness.score(harness.bm25_rank(str(work), r["problem_statement"]), r["gold_files"])
            if naive is not None:
                t0 = time.time()
                ranked, embedded = naive.rank(work, tracked_files(work), r["problem_statement"])
                rec["naive"] = harness.score(ranked, r["gold_files"])
                rec["naive_top5"] = ranked[:5]
                rec["naive_embedded"] = embedded
                rec["naive_s"] = round(time.time() - t0, 1)
            missing = [name for name in names if name not in rec]
            if missing:  # every system is scored on the same instances, or the instance is left out
                print(f"skip {r['instance_id']}: no {', '.join(missing)} score", file=sys.stderr)
                continue
            for name in names:
                for k, v in rec[name].items():
                    totals[name][k] += v
            n += 1
            print(f"{r['instance_id']}: " + " ".join(f"{name} mrr={rec[name]['mrr']:.2f}" for name in names),
                  file=sys.stderr, flush=True)
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
    if not n:
        raise SystemExit("no instance evaluated")
    print(f"instances: {n}")
    print(f"{'system':16}" + " ".join(f"{c:>9}" for c in COLUMNS))
    for name in names:
        print(f"{name:16}" + " ".join(f"{totals[name][c] / n:9.3f}" for c in COLUMNS))
    if "bm25" in totals and totals["bm25"]["acc@5"]:
        for name in names:
            if name.startswith("cairn"):
                print(f"ratio acc@5 {name}/bm25: {totals[name]['acc@5'] / totals['bm25']['acc@5']:.2f}")


if __name__ == "__main__":
    main()
