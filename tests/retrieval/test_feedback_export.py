"""Feedback collected on logged queries becomes a `cairn eval` file that `cairn eval` then scores."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.audit import AuditLog
from indexer.catalog import Catalog
from indexer.catalog.db import make_engine
from indexer.models import Principal
from indexer.services import IndexServices
from retrieval.evaluation import load_queries
from retrieval.feedback_export import ExportStats, FeedbackExportError, export_feedback
from retrieval.permissions import Scope
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

CAIRN = str(Path(sys.executable).with_name("cairn"))
ALICE = Principal(user="alice")


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAIRN_DATA_DIR": str(data_dir)}
    env.pop("CAIRN_URL", None)
    return subprocess.run([CAIRN, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture
def shop(make_repo, settings, embedder):
    repo = make_repo("shop")
    repo.write("shop/checkout.py", "def checkout_total(cart):\n    return sum(item.price for item in cart)\n\n"
                                   "def apply_coupon(total, coupon):\n    return total - coupon.discount\n")
    repo.write("shop/shipping.py", "def shipping_cost(weight, country):\n    return 5 + weight * 2\n")
    repo.write("README.md", "# Shop\n\nCheckout totals, coupons and shipping.\n")
    repo.commit()
    svc = IndexServices.open(settings, embedder=embedder)
    svc.catalog.upsert_source("shop", "git", {"location": str(repo.root), "ref": ""}, ["public"])
    run_sync_job(svc, "shop")
    yield svc
    svc.close()


def _ask(svc: IndexServices, audit: AuditLog, text: str, query_id: str) -> dict[str, str]:
    """Search like the API does and log it; returns chunk id by path of the hits shown."""
    searcher = build_searcher(svc)
    searcher.relevance_floor = 0.0  # feedback on whatever was shown, even for a weak query ("readme typo")
    hits = searcher.search(text, ALICE, Scope(sources=("shop",)), limit=10).hits
    searcher.close()
    audit.record(ALICE, "search", scope=Scope(sources=("shop",)), result_ids=[h.chunk_id for h in hits],
                 query_id=query_id, query_text=text)
    return {h.path: h.chunk_id for h in reversed(hits)}  # the best hit of each file wins


def test_useful_feedback_becomes_eval_queries_and_the_rest_is_counted(shop):
    engine = shop.catalog.engine
    audit = AuditLog(engine, keep_query_text=True)
    shown = _ask(shop, audit, "coupon discount applied twice at checkout", "q-coupon")
    audit.add_feedback(ALICE, "q-coupon", shown["shop/checkout.py"], useful=True)
    audit.add_feedback(ALICE, "q-coupon", shown["README.md"], useful=False)
    shown = _ask(shop, audit, "shipping cost wrong for heavy parcels", "q-shipping")
    audit.add_feedback(ALICE, "q-shipping", shown["shop/shipping.py"], useful=True)
    audit.add_feedback(ALICE, "q-shipping", shown["shop/checkout.py"], useful=True)
    audit.add_feedback(ALICE, "q-shipping", shown["shop/checkout.py"], useful=False)  # net 0: not expected
    shown = _ask(shop, audit, "readme typo", "q-negative")
    audit.add_feedback(ALICE, "q-negative", shown["README.md"], useful=False)
    private = AuditLog(engine, keep_query_text=False)
    shown = _ask(shop, private, "shipping to another country", "q-untold")
    private.add_feedback(ALICE, "q-untold", shown["shop/shipping.py"], useful=True)

    stats = ExportStats()
    lines = list(export_feedback(engine, shop.catalog, stats=stats))

    assert [(line["query"], line["source"], line["expected_paths"]) for line in lines] == [
        ("coupon discount applied twice at checkout", "shop", ["shop/checkout.py"]),
        ("shipping cost wrong for heavy parcels", "shop", ["shop/shipping.py"]),
    ]
    assert stats.as_dict() == {"queries": 2, "feedback_rows": 7, "without_text": 1, "without_useful": 1,
                               "unresolved_hits": 0}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert list(export_feedback(engine, shop.catalog, since=later)) == []
    earlier = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)  # naive means UTC
    assert len(list(export_feedback(engine, shop.catalog, since=earlier))) == 2


def test_export_from_a_catalog_without_audit_tables_says_so(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'bare.sqlite3'}")
    with pytest.raises(FeedbackExportError, match="no audit_log or feedback table"):
        list(export_feedback(engine, Catalog(engine)))


def test_cli_exports_feedback_that_cairn_eval_scores(shop, settings, tmp_path):
    audit = AuditLog(shop.catalog.engine, keep_query_text=True)
    shown = _ask(shop, audit, "apply_coupon subtracts the discount", "q1")
    audit.add_feedback(ALICE, "q1", shown["shop/checkout.py"], useful=True)
    shown = _ask(shop, audit, "shipping_cost by weight", "q2")
    audit.add_feedback(ALICE, "q2", shown["shop/shipping.py"], useful=True)
    shop.close()  # the CLI opens the index itself

    exported = _cli(settings.data_dir, "feedback", "export", "--since", "2000-01-01")
    assert exported.returncode == 0, exported.stderr
    assert "queries=2" in exported.stderr
    queries_file = tmp_path / "queries.jsonl"
    queries_file.write_text(exported.stdout, encoding="utf-8")
    assert [q.expected_paths for q in load_queries(queries_file)] == [("shop/checkout.py",), ("shop/shipping.py",)]

    scored = _cli(settings.data_dir, "eval", str(queries_file), "--json")
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout.strip().splitlines()[-1])
    assert report["queries"] == 2
    assert set(report["metrics"]) >= {f"{m}@{k}" for m in ("acc", "recall", "hit") for k in (1, 5, 10)} | {"mrr"}
    assert report["metrics"]["acc@5"] == 1.0 and report["metrics"]["mrr"] == 1.0

    bad = _cli(settings.data_dir, "feedback", "export", "--since", "last tuesday")
    assert bad.returncode == 2 and "not an ISO date" in bad.stderr
