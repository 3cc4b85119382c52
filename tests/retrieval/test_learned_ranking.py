"""Weights learned from a repository's own history: a real repository whose commits teach what the default
weights get wrong (a message names its module by the folder, and a shared file named after the message's
other words is a decoy), the fit judged on held-out commits, stored, used by search only when the setting is
on, and the `cairn ranker` commands."""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from api.cli import app
from indexer.catalog import open_catalog
from indexer.catalog.schema import RankerFitRecord
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval import learned_ranking
from retrieval.learned_ranking import (
    FITTER,
    LearnedReranker,
    LearnedWeights,
    RankerError,
    Samples,
    coordinate_ascent,
    fit_source,
    mine_pairs,
)
from retrieval.permissions import Scope
from retrieval.rerank_features import FeatureReranker
from retrieval.searcher import build_searcher
from workers.jobs import run_sync_job

TOPICS = ("billing", "shipping", "accounts", "reports", "payments", "inventory", "alerts", "imports", "exports",
          "sessions", "ledger", "pricing")
NOUNS = ("rounding", "overflow", "timezone", "encoding", "retries", "caching", "locking", "paging", "parsing",
         "logging", "sorting", "quoting", "hashing", "batching", "padding", "escaping")


def git(repo: Path, *args: str, minute: int = 0) -> str:
    when = f"2026-01-01T10:{minute:02d}:00+00:00"
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com", "GIT_COMMITTER_NAME": "Ada",
           "GIT_COMMITTER_EMAIL": "ada@example.com", "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_DATE": when,
           "GIT_COMMITTER_DATE": when, "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def decoy(first: str, second: str) -> str:
    return (f'"""Shared {first} and {second} helpers."""\n\n\ndef {first}_{second}(value):\n'
            f'    """{first.title()} {second}: the {first} of a value with {second}."""\n    return value\n')


def build_repo(root: Path) -> list[tuple[str, str]]:
    """Every module `<topic>/engine.py`; each commit `<topic>: fix <noun> <noun>` changes its module, while
    `shared/<noun>_<noun>.py` holds a function named after the nouns. Returns (message, touched path)."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for topic in TOPICS:
        (root / topic).mkdir()
        (root / topic / "engine.py").write_text(f'"""The {topic} module."""\n\n\ndef run(state):\n    return state\n')
    (root / "shared").mkdir()
    pairs = [(NOUNS[i % len(NOUNS)], NOUNS[(3 * i + 1) % len(NOUNS)]) for i in range(48)]
    for first, second in pairs:
        (root / "shared" / f"{first}_{second}.py").write_text(decoy(first, second))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "Initial import")
    out = []
    for i, (first, second) in enumerate(pairs):
        topic = TOPICS[i % len(TOPICS)]
        with (root / topic / "engine.py").open("a") as f:
            f.write(f"\n\ndef step_{i}(state):\n    return state + {i}\n")
        message = f"{topic}: fix {first} {second}"
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", message, minute=1 + i)
        out.append((message, f"{topic}/engine.py"))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[tuple[Settings, list[tuple[str, str]]]]:
    root = tmp_path_factory.mktemp("learned")
    commits = build_repo(root / "repo")
    settings = Settings(data_dir=root / "data", history_commits=5000, relevance_floor=0.0)
    services = IndexServices.open(settings, embedder=embedder)
    try:
        services.catalog.upsert_source("app", "git", {"location": str(root / "repo"), "ref": ""}, ["public"])
        run_sync_job(services, "app")
        searcher = build_searcher(services)
        try:
            fit_source(searcher, services.catalog, "app")
        finally:
            searcher.close()
    finally:
        services.close()
    yield settings, commits


@pytest.fixture
def services(world, embedder) -> Iterator[IndexServices]:
    svc = IndexServices.open(world[0], embedder=embedder)
    yield svc
    svc.close()


def test_pairs_are_the_newest_commits_with_code_files(services):
    pairs = mine_pairs(services.catalog, "app", 1000)
    assert len(pairs) == 48  # the initial import touches more than 20 files
    assert (pairs[0].message, pairs[0].paths) == ("pricing: fix escaping padding", ("pricing/engine.py",))
    assert all(len(p.paths) == 1 and p.paths[0].endswith("/engine.py") for p in pairs)
    assert len(mine_pairs(services.catalog, "app", 5)) == 5
    with pytest.raises(RankerError, match="no source named"):
        mine_pairs(services.catalog, "nope")


def test_the_fit_beats_the_defaults_on_held_out_commits_and_is_stored(services):
    fit = services.catalog.ranker_fits()["app"]
    assert fit.pairs == 48 and fit.held_out == 10
    assert fit.mrr_learned >= fit.mrr_default + 0.1
    assert fit.kept
    assert fit.weights["symbol_parts"] < 0.2  # a symbol named like the message's words is what misleads here
    assert fit.seconds < 60


def test_search_uses_the_learned_weights_only_with_the_setting_on(world, services):
    settings, commits = world
    message, touched = commits[-1]  # held out: the newest commit

    def top(learned: bool) -> str:
        searcher = build_searcher(replace(services, settings=settings.model_copy(update={"learned_ranking": learned})))
        try:
            return searcher.search(message, FITTER, Scope(sources=("app",)), limit=5).hits[0].path
        finally:
            searcher.close()
    assert top(True) == touched
    assert top(False) != touched


def test_weights_that_do_not_beat_the_defaults_are_stored_but_not_used(services, monkeypatch):
    searcher = build_searcher(services)
    try:
        with pytest.raises(RankerError, match=r"has 5 usable commits .* at least 10"):
            fit_source(searcher, services.catalog, "app", commits=5)
        monkeypatch.setattr(learned_ranking, "KEEP_MARGIN", 2.0)
        fit = fit_source(searcher, services.catalog, "app")
        assert not fit.kept and services.catalog.ranker_fits()["app"] == fit
        assert LearnedWeights(services.catalog).current() == {}
        monkeypatch.undo()
        assert fit_source(searcher, services.catalog, "app").kept  # back as the other tests found it
    finally:
        searcher.close()


def test_weights_are_cached_and_reread_after_the_ttl(services):
    now = [0.0]
    cache = LearnedWeights(services.catalog, ttl=30, clock=lambda: now[0])
    assert "app" in cache.current()
    kept = services.catalog.ranker_fits()["app"]
    terms = dict(cache.terms()["app"])
    assert kept.weights and all(terms[k] == pytest.approx(v) for k, v in kept.weights.items())
    reranker = LearnedReranker(cache)
    assert reranker.terms_for("app") is reranker.terms_for("app")  # built once per read, not per candidate
    assert reranker.terms_for("other") == FeatureReranker().terms_for("other")
    services.catalog.clear_ranker_fit("app")
    try:
        assert "app" in cache.current()  # within the ttl: no read
        now[0] = 31
        assert cache.current() == {} and cache.terms() == {}
    finally:
        services.catalog.save_ranker_fit(kept)


def test_coordinate_ascent_moves_a_weight_until_the_touched_file_ranks_first():
    samples = Samples(["a", "b"], file_support=0.0, support_chunks=3)
    samples._rows = [[1.0, 0.0], [0.0, 1.0]]
    samples._group, samples._group_pair, samples._group_gold, samples.pairs = [0, 1], [0, 0], [False, True], 1
    samples.freeze()
    start = np.array([1.0, 0.5])
    assert samples.reciprocal_ranks(start).tolist() == [0.5]
    learned = coordinate_ascent(lambda w: float(samples.reciprocal_ranks(w).mean()), start, fixed=[0])
    assert samples.reciprocal_ranks(learned).tolist() == [1.0] and learned[0] == 1.0


# -- the commands --------------------------------------------------------------------------------------

@pytest.fixture
def cli(world, monkeypatch):
    settings, _ = world
    monkeypatch.setenv("CAIRN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CAIRN_RELEVANCE_FLOOR", "0")
    monkeypatch.delenv("CAIRN_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result
    return invoke


def test_ranker_commands(cli, world):
    fit = json.loads(cli("ranker", "fit", "app", "--commits", "40", "--json").stdout)
    assert fit["pairs"] == 40 and fit["held_out"] == 8 and fit["kept"] is True
    assert "kept" in cli("ranker", "fit", "app", "--commits", "40").stdout
    shown = json.loads(cli("ranker", "show", "--json").stdout)
    assert [s["source"] for s in shown] == ["app"] and shown[0]["pairs"] == 40
    assert "path_terms" in cli("ranker", "show", "app").stdout
    assert "cleared" in cli("ranker", "clear", "app").stdout
    assert "no fitted weights" in cli("ranker", "show").stdout
    assert "has no fitted weights" in cli("ranker", "clear", "app", code=1).output
    assert "no source named 'nope'" in cli("ranker", "fit", "nope", code=1).output
    assert "no source named 'nope'" in cli("ranker", "show", "nope", code=1).output
    catalog = open_catalog(world[0].catalog_url)
    catalog.upsert_source("empty", "git", {"location": "/nowhere", "ref": ""}, ["public"])
    catalog.engine.dispose()
    assert "has no indexed commits" in cli("ranker", "fit", "empty", code=1).output
    cli("ranker", "fit", "app")  # back as the other tests found it


def test_a_fit_record_round_trips(services):
    record = services.catalog.ranker_fits()["app"]
    assert isinstance(record, RankerFitRecord) and record.fitted_at.tzinfo is not None


def test_deleting_a_source_forgets_its_fit(tmp_path):
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    catalog.upsert_source("gone", "git", {"location": "/nowhere", "ref": ""}, ["public"])
    catalog.save_ranker_fit(RankerFitRecord("gone", {"rrf": 1.0}, datetime.now(UTC), 12, 2, 0.5, 0.6, True, 1.0))
    assert catalog.delete_source("gone")["ranker_weights"] == 1
    assert catalog.ranker_fits() == {}
    catalog.engine.dispose()
