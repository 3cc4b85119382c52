"""The `cairn` command as a new user meets it: each common mistake answered in at most three lines, without
a traceback, saying what to do; ids taken by any unique prefix; tables that fit 80 columns."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from api.cli import app
from api.cli_format import human_time
from api.cli_ids import short_ids
from api.tokens import TokenStore
from indexer.catalog import open_catalog
from indexer.catalog.schema import api_tokens
from tests.conftest import KEPT_ENV

CAIRN = str(Path(sys.executable).with_name("cairn"))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket is closed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A repository, a plain folder, a data directory with one token and one source (nothing indexed)."""
    root = tmp_path_factory.mktemp("mistakes")
    repo = root / "shop"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                                                   "--allow-empty", "-m", "init"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "shop.py").write_text("def checkout():\n    return 1\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "s"],
                   check=True)
    (root / "plain").mkdir()
    queries = root / "queries.jsonl"
    queries.write_text('{"query": "x"}\n')
    data = root / "data"
    data.mkdir()
    TokenStore(open_catalog(f"sqlite:///{data / 'catalog.sqlite3'}").engine).create("alice", ["eng"])
    return {"root": root, "repo": repo, "data": data, "fresh": root / "fresh", "queries": queries}


# (what the user typed, exit code, what the answer must say to do). {repo}, {root}, {port} are filled in.
MISTAKES = [
    (["index", "{root}/plain"], 1, "git repository"),
    (["index", "{root}/no/such/folder"], 1, "git repository"),
    (["index", "{repo}", "--ref", "no-such-branch"], 1, "--ref"),
    (["index", "https://cairn-test.invalid/team/shop.git"], 1, "check the URL"),
    (["index", "{repo}", "--name", "bad name!"], 2, "letters, digits"),
    (["index", "{repo}", "--access", "bob"], 2, "user:NAME"),
    (["tokens", "revoke", "5ff7d4c2"], 1, "cairn tokens list"),
    (["jobs", "show", "5ff7d4c2"], 1, "cairn jobs"),
    (["jobs", "cancel", "5ff7d4c2"], 1, "cairn jobs"),
    (["sources", "set", "nope", "--access", "public"], 1, "cairn sources"),
    (["reindex", "nope"], 1, "cairn sources"),
    (["sources", "--url", "http://127.0.0.1:{port}"], 1, "server running"),
    (["search", "checkout", "--url", "http://127.0.0.1:{port}"], 1, "CAIRN_URL"),
    (["eval", "{root}/queries.jsonl"], 2, "JSONL"),
    # Options that would be ignored are refused: over --url the token decides who asks; groups need a user.
    (["search", "checkout", "--as-user", "sam", "--url", "http://127.0.0.1:{port}"], 2, "in-process only"),
    (["search", "checkout", "--group", "security"], 2, "--as-user"),
    (["locate", "checkout", "--group", "security"], 2, "--as-user"),
]


def run(args: list[str], data: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
    return subprocess.run([CAIRN, *args], capture_output=True, text=True, timeout=300, check=False,
                          env=clean | {"CAIRN_DATA_DIR": str(data), "COLUMNS": "80"} | env)


def assert_short_and_helpful(proc: subprocess.CompletedProcess, code: int, todo: str) -> None:
    output = proc.stdout + proc.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert proc.returncode == code, output
    assert "Traceback" not in output and len(output.splitlines()) <= 3, output
    assert lines[-2 if len(lines) > 1 else -1].startswith("error:") or lines[0].startswith("error:"), output
    assert todo in output, output


@pytest.mark.parametrize(("args", "code", "todo"), MISTAKES, ids=[" ".join(m[0][:2]) + f"-{i}"
                                                                  for i, m in enumerate(MISTAKES)])
def test_each_common_mistake_gets_a_short_answer_that_says_what_to_do(world, args, code, todo):
    filled = [a.format(repo=world["repo"], root=world["root"], port=closed_port()) for a in args]
    assert_short_and_helpful(run(filled, world["data"]), code, todo)


def test_a_failed_first_index_keeps_nothing_and_the_same_command_works_once_fixed(world):
    data = world["root"] / "again"
    assert_short_and_helpful(run(["index", str(world["repo"]), "--ref", "nope", "--access", "public"], data),
                             1, "run the same command again")
    assert json.loads(run(["sources", "--json"], data).stdout) == []
    done = run(["index", str(world["repo"]), "--access", "public", "--json"], data)
    assert done.returncode == 0 and json.loads(done.stdout)["files_changed"] == 1, done.stderr


def test_a_fresh_machine_and_bad_settings(world):
    fresh = run(["tokens", "list"], world["fresh"])
    assert fresh.returncode == 0 and "tokens create" in fresh.stderr and "Traceback" not in fresh.stderr
    assert not world["fresh"].exists()  # listing created nothing
    assert json.loads(run(["tokens", "list", "--json"], world["fresh"]).stdout) == []
    assert_short_and_helpful(run(["tokens", "list"], world["data"], CAIRN_PORT="eighty"), 2, "CAIRN_PORT")


def test_verbose_shows_the_trace_before_or_after_the_command(world):
    for args in (["-v", "index", f"{world['root']}/plain"], ["index", f"{world['root']}/plain", "--verbose"]):
        proc = run(args, world["root"] / "verbose")
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "error:" in proc.stderr


def test_the_admins_only_warning_says_how_to_grant_access(world):
    proc = run(["index", str(world["repo"])], world["root"] / "warned")
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "only admins" in warning[0] and "cairn sources set shop --access" in warning[0]
    table = run(["sources"], world["root"] / "warned").stdout
    assert "admins only" in table
    helped = run(["index", "--help"], world["root"] / "warned").stdout
    assert "only admins" in " ".join(helped.split())


# -- ids: any unique prefix, ambiguity named ---------------------------------------------------------

@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("CAIRN_URL", raising=False)
    (tmp_path / "data").mkdir()
    catalog = open_catalog(f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite3'}")
    engine = catalog.engine
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result
    invoke.catalog = catalog
    invoke.tokens = TokenStore(engine)
    return invoke


def test_jobs_take_any_unique_prefix_and_an_ambiguous_one_lists_the_candidates(cli):
    for job_id in ("5ff7d4c2-0000-4000-8000-000000000001", "5ff7d4c2-0000-4000-8000-000000000002",
                   "9a000000-0000-4000-8000-000000000003"):
        cli.catalog.create_job(job_id, "shop", "index")
    assert json.loads(cli("jobs", "show", "9a", "--json").stdout)["id"] == "9a000000-0000-4000-8000-000000000003"
    ambiguous = cli("jobs", "show", "5ff7d4c2", code=2).output
    assert "000000000001" in ambiguous and "000000000002" in ambiguous and "more characters" in ambiguous
    assert "cancelling" in cli("jobs", "cancel", "5ff7d4c2-0000-4000-8000-000000000002").output
    assert cli.catalog.get_job("5ff7d4c2-0000-4000-8000-000000000002").state == "cancelling"
    cli("jobs", "cancel", "5ff7d4c2-0000-4000-8000-0000000000", code=2)  # still two candidates
    assert "no job '7'" in cli("jobs", "cancel", "7", code=1).output


def test_tokens_revoke_takes_the_prefix_the_table_shows(cli):
    _, first = cli.tokens.create("alice", ["eng"])
    _, second = cli.tokens.create("bob", [])
    with cli.tokens.engine.begin() as conn:  # two ids sharing their first 8 characters
        conn.execute(update(api_tokens).where(api_tokens.c.id == second.id).values(id=first.id[:8] + second.id[8:]))
    second_id = first.id[:8] + second.id[8:]
    table = cli("tokens", "list").stdout
    shown = short_ids([first.id, second_id])
    assert shown[first.id] in table and shown[second_id] in table and len(shown[first.id]) > 8
    assert first.id[:8] in cli("tokens", "revoke", first.id[:8], code=2).output  # ambiguous
    assert "revoked" in cli("tokens", "revoke", shown[second_id]).stdout
    assert [t.revoked_at is not None for t in cli.tokens.list()] == [False, True]
    assert "already revoked" in cli("tokens", "revoke", second_id, code=1).output


# -- 80 columns ------------------------------------------------------------------------------------

LONG = "platform-infrastructure-monorepo-with-a-very-long-name"


def fits(output: str, width: int = 80) -> list[str]:
    lines = output.splitlines()
    assert lines and all(len(line) <= width for line in lines), "\n".join(f"{len(x):3} {x}" for x in lines)
    return lines


def test_tables_fit_80_columns_with_whole_ids_and_human_times(cli):
    catalog = cli.catalog
    for n in range(3):
        catalog.upsert_source(f"{LONG}-{n}", "git", {"location": f"/srv/git/{LONG}/{LONG}-{n}"},
                              [] if n else ["group:platform-engineering", "group:site-reliability", "public"])
        job_id = catalog.create_job(None, f"{LONG}-{n}", "permissions")
        catalog.update_job(job_id, state="interrupted", counts={"files_seen": 123456})
        cli.tokens.create(f"{LONG}@example.com", ["platform-engineering", "site-reliability"], name=LONG)
    sources = fits(cli("sources").stdout)
    assert sum("admins only" in line for line in sources) == 2
    jobs = fits(cli("jobs").stdout)
    listed = [re.split(r"\s+", line)[0] for line in jobs[2:]]
    assert len(listed) == 3 and all(len(i) >= 8 for i in listed)
    assert "just now" in jobs[2] and "interrupted" in jobs[2] and "123456" in jobs[2]
    shown = json.loads(cli("jobs", "show", listed[0], "--json").stdout)  # the table's id is enough
    assert shown["id"].startswith(listed[0])
    tokens = fits(cli("tokens", "list").stdout)
    assert all(re.match(r"^[0-9a-f]{8}\s", line) for line in tokens[2:]) and "never" in tokens[2]


def test_human_times():
    import datetime as dt

    now = dt.datetime(2026, 12, 6, 12, 15, tzinfo=dt.UTC)
    assert human_time(now - dt.timedelta(seconds=20), now) == "just now"
    assert human_time((now - dt.timedelta(minutes=2)).isoformat(), now) == "2 min ago"
    assert human_time(now + dt.timedelta(hours=3), now) == "in 3 h"
    assert human_time(dt.datetime(2026, 11, 1, 8, 5, tzinfo=dt.UTC), now).startswith("2026-11-0")
    assert human_time(None) == "-"
