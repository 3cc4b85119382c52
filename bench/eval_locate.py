"""`search` against `locate` on a SWE-bench-style eval set, scored with ../shared/eval/run_swebench.py's own functions.

Each instance is checked out (the harness's `checkout`) and indexed once, in-process, as `cairn index` indexes
it (commit history included); then, on that index and in the same process:
  search    the hybrid search as `cairn search --limit 50 --json` answers (its distinct paths in rank order),
            without the history signal (CAIRN_HISTORY_WEIGHT=0)
  search+h  the same with the history signal at --history-weight (files changed by similar commits gain)
  locate    `cairn locate --limit 50 --json` (files in rank order), its search without the history signal
  locate+h  the same over the search with the history signal
  search+l  `search` with CAIRN_LEARNED_RANKING on, after `cairn ranker fit` on the instance's own indexed
            commits (never past its base commit): the learned weights where the fit kept them, the defaults
            otherwise (the record's `fit` says which, with the fit's seconds and held-out MRR)
  locate+l  `locate` over that search
  bm25    the harness's whole-file BM25 on the same checkout
Per repository and overall: acc@1/5/10, MRR, tokens returned per instance and p50 latency. Tokens are the
code an agent receives to see the first 10 files: for search the chunks of the hits up to the 10th distinct
file, for locate the line ranges of its first 10 files (about 4 characters a token, `estimate_tokens`).

    .venv/bin/python bench/eval_locate.py --mirror /work/.mirror --repos psf/requests --work /tmp/eval-locate \\
        --out /tmp/eval-locate.jsonl
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_harness import add_eval_arguments, clone_for, instances_by_repo, load_harness

from indexer.models import Principal
from indexer.services import IndexServices, build_embedder
from indexer.settings import Settings
from retrieval.history import HistoryIndex
from retrieval.learned_ranking import DEFAULT_COMMITS, RankerError, fit_source
from retrieval.locate import DEFAULT_BUDGET_SECONDS, Locator
from retrieval.packing import estimate_tokens
from retrieval.permissions import Scope
from retrieval.search import SearchOptions
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

ROOT = Path(__file__).resolve().parents[1]
RESULTS = 50  # what the harness asks `cairn search` for
SEEN_FILES = 10  # tokens are counted for the first this many files
SYSTEMS = ("search", "search+h", "search+l", "locate", "locate+h", "locate+l", "bm25")
METRICS = ("acc@1", "acc@5", "acc@10", "mrr")
READER = Principal(user="eval", admin=True)


def run_search(services: IndexServices, searcher, text: str, source: str, harness: ModuleType) -> dict:
    t0 = time.perf_counter()
    hits = searcher.search(text, READER, Scope(sources=(source,)), limit=RESULTS).hits
    seconds = time.perf_counter() - t0
    ranked = harness.distinct_paths([{"path": h.path} for h in hits])
    shown = set(ranked[:SEEN_FILES])
    seen = [h for h in hits if h.path in shown]
    rows = services.catalog.get_chunks([h.chunk_id for h in seen])
    tokens = sum(estimate_tokens(rows[h.chunk_id].content) for h in seen if h.chunk_id in rows)
    return {"ranked": ranked, "seconds": seconds, "tokens": tokens}


def run_locate(locator: Locator, text: str, source: str, budget: float) -> dict:
    t0 = time.perf_counter()
    result = locator.locate(text, READER, Scope(sources=(source,)), limit=RESULTS, budget=budget)
    seconds = time.perf_counter() - t0
    return {"ranked": [f.path for f in result.files], "seconds": seconds,
            "tokens": sum(f.tokens for f in result.files[:SEEN_FILES]), "truncated": result.truncated,
            "evidence": {f.path: list(f.evidence) for f in result.files[:3]}}


def index_instance(services: IndexServices, source: str, work: Path) -> dict:
    t0 = time.time()
    if services.catalog.get_source(source) is None:
        services.catalog.upsert_source(source, "git", {"location": str(work), "ref": ""}, ["public"])
    counts = run_sync_job(services, source)
    return {"chunks_embedded": counts.chunks_embedded, "seconds": round(time.time() - t0, 1)}


def fit_ranker(services: IndexServices, searcher, source: str, commits: int) -> dict:
    """`cairn ranker fit` on the instance's index; a fit that cannot run leaves the default weights."""
    services.catalog.clear_ranker_fit(source)  # the previous instance's fit of this repository
    t0 = time.perf_counter()
    try:
        fit = fit_source(searcher, services.catalog, source, commits)
    except RankerError as exc:
        return {"kept": False, "error": str(exc), "seconds": round(time.perf_counter() - t0, 2)}
    return {"kept": fit.kept, "pairs": fit.pairs, "held_out": fit.held_out, "mrr_default": fit.mrr_default,
            "mrr_learned": fit.mrr_learned, "seconds": fit.seconds}


def table(records: list[dict], title: str) -> list[str]:
    lines = [f"{title} ({len(records)} instances)",
             f"{'system':8}" + "".join(f"{m:>9}" for m in METRICS) + f"{'tokens':>10}{'p50 ms':>9}"]
    for name in SYSTEMS:
        scored = [r for r in records if name in r]
        if not scored:
            continue
        means = [sum(r[name]["score"][m] for r in scored) / len(scored) for m in METRICS]
        tokens = [r[name]["tokens"] for r in scored if "tokens" in r[name]]
        times = [r[name]["seconds"] for r in scored if "seconds" in r[name]]
        tok = f"{statistics.mean(tokens):10.0f}" if tokens else f"{'-':>10}"
        p50 = f"{statistics.median(times) * 1000:9.0f}" if times else f"{'-':>9}"
        lines.append(f"{name:8}" + "".join(f"{v:9.3f}" for v in means) + tok + p50)
    fits = [r["fit"] for r in records if "fit" in r]
    if fits:
        lines.append(f"ranker fit: kept on {sum(f['kept'] for f in fits)} of {len(fits)} instances, "
                     f"median {statistics.median(f['seconds'] for f in fits):.1f}s")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_arguments(ap)
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET_SECONDS, help="locate's time budget (seconds)")
    ap.add_argument("--history-weight", type=float, default=0.3,
                    help="the history signal's weight for search+h and locate+h (CAIRN_HISTORY_WEIGHT)")
    ap.add_argument("--ranker-commits", type=int, default=DEFAULT_COMMITS,
                    help="commits `search+l` and `locate+l` learn from (`cairn ranker fit --commits`)")
    ap.add_argument("--no-baseline", action="store_true", help="leave out the harness BM25")
    ap.add_argument("--out", type=Path, default=None, help="one JSON line per instance")
    a = ap.parse_args()
    harness = load_harness(a.harness)
    by_repo = instances_by_repo(a)
    a.work.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=a.work / "data")
    embedder = build_embedder(settings)
    out = a.out.open("w") if a.out else None
    records: dict[str, list[dict]] = collections.defaultdict(list)
    for repo, items in by_repo.items():
        work = a.work / repo.replace("/", "__")
        if not clone_for(repo, a.mirror, work):
            print(f"skip {repo}: no clone of it under {a.mirror}", file=sys.stderr)
            continue
        source = repo.split("/")[1]
        for r in items:
            harness.checkout(str(work), r["base_commit"])
            services = IndexServices.open(settings, embedder=embedder)
            searcher = build_searcher(services)
            searcher.options = SearchOptions(history_weight=0.0)
            with_history = build_searcher(services)
            with_history.options = SearchOptions(history_weight=a.history_weight)
            learned = build_searcher(replace(services, settings=settings.model_copy(update={"learned_ranking": True})))
            learned.options = SearchOptions(history_weight=0.0)
            try:
                rec: dict = {"instance_id": r["instance_id"], "repo": repo, "gold": r["gold_files"],
                             "index": index_instance(services, source, work)}
                history = HistoryIndex(services.catalog, services.fulltext, settings, services.pipeline.secrets)
                rec["search"] = run_search(services, searcher, r["problem_statement"], source, harness)
                rec["search+h"] = run_search(services, with_history, r["problem_statement"], source, harness)
                rec["locate"] = run_locate(Locator.over(searcher, history), r["problem_statement"], source, a.budget)
                rec["locate+h"] = run_locate(Locator.over(with_history, history), r["problem_statement"], source,
                                             a.budget)
                rec["fit"] = fit_ranker(services, searcher, source, a.ranker_commits)
                rec["search+l"] = run_search(services, learned, r["problem_statement"], source, harness)
                rec["locate+l"] = run_locate(Locator.over(learned, history), r["problem_statement"], source, a.budget)
            finally:
                learned.close()
                with_history.close()
                searcher.close()
                services.close()
            if not a.no_baseline:
                rec["bm25"] = {"ranked": harness.bm25_rank(str(work), r["problem_statement"])}
            for name in SYSTEMS:
                if name in rec:
                    rec[name]["score"] = harness.score(rec[name]["ranked"], r["gold_files"])
                    rec[name]["ranked"] = rec[name]["ranked"][:10]
            records[repo].append(rec)
            print(f"{r['instance_id']}: " + " ".join(f"{n} mrr={rec[n]['score']['mrr']:.2f}" for n in SYSTEMS
                                                     if n in rec) + f" fit={rec['fit']}", file=sys.stderr, flush=True)
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
    if not records:
        raise SystemExit("no instance evaluated")
    for repo, recs in sorted(records.items()):
        print("\n".join(table(recs, repo)) + "\n")
    if len(records) > 1:
        print("\n".join(table([r for recs in records.values() for r in recs], "all")))


if __name__ == "__main__":
    main()
