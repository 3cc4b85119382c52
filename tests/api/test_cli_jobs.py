"""Jobs from the admin's side: the real `cairn` command (local and against a served app), the REST
routes (cancel, filters, audit), Prometheus, and `cairn db upgrade` on fresh SQLite and PostgreSQL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from api_harness import auth, git_repo, serve, token
from sqlalchemy import create_engine, inspect, text

from api.app import create_app
from indexer.catalog.migrate import alembic_config
from indexer.pipeline.reconcile import reconcile_source
from indexer.services import IndexServices
from indexer.settings import Settings
from tests.conftest import KEPT_ENV
from workers.jobs import run_sync_job

CAIRN = str(Path(sys.executable).with_name("cairn"))
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def cairn(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
    return subprocess.run([CAIRN, *args], capture_output=True, text=True, env={**clean, **env}, timeout=300,
                          check=False)


def ok_json(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, embedder):
    """Sources `alpha` (many small files) and `beta`, indexed, served by a real uvicorn server."""
    root = tmp_path_factory.mktemp("jobs")
    settings = Settings(data_dir=root / "data", scheduler_tick_seconds=0)
    services = IndexServices.open(settings, embedder=embedder)
    files = {f"pkg/mod{i}.py": f"def alpha_{i}(x):\n    return x + {i}\n" for i in range(12)}
    repos = {"alpha": git_repo(root / "alpha", files),
             "beta": git_repo(root / "beta", {"deploy.py": "def deploy_beta():\n    return 'rollout'\n"})}
    for name, repo in repos.items():
        services.catalog.upsert_source(name, "git", {"location": str(repo)}, ["group:eng"])
        run_sync_job(services, name)
    with serve(create_app(settings, services=services)) as url:
        tok = token(services, "root", admin=True)
        yield {"url": url, "services": services, "settings": settings,
               "remote": {"CAIRN_URL": url, "CAIRN_TOKEN": tok}, "local": {"CAIRN_DATA_DIR": str(settings.data_dir)},
               "token": tok}
    services.close()


def test_reindex_all_remote_runs_one_job_per_source_and_jobs_lists_them(deployment):
    proc = cairn("reindex", "--all", "--full", "--json", env=deployment["remote"])
    assert proc.returncode == 0, proc.stderr
    summaries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(s["source"] for s in summaries) == ["alpha", "beta"]
    listed = ok_json(cairn("jobs", "--json", "--limit", "2", env=deployment["remote"]))
    assert sorted(j["source"] for j in listed) == ["alpha", "beta"]
    for job in listed:
        assert job["state"] == "succeeded" and job["kind"] == "reindex" and job["files_seen"] >= 1
        assert job["items_per_second"] > 0 and job["pending_chunks"] == 0 and job["eta_seconds"] is None
    only = ok_json(cairn("jobs", "--json", "--source", "beta", env=deployment["remote"]))
    assert {j["source"] for j in only} == {"beta"}
    table = cairn("jobs", env=deployment["remote"] | {"COLUMNS": "200"})
    assert table.returncode == 0 and "alpha" in table.stdout and "succeeded" in table.stdout


def test_jobs_local_reads_the_same_catalog_while_the_server_runs(deployment):
    remote = ok_json(cairn("jobs", "--json", env=deployment["remote"]))
    local = ok_json(cairn("jobs", "--json", env=deployment["local"]))
    assert [j["id"] for j in local] == [j["id"] for j in remote]
    shown = ok_json(cairn("jobs", "show", local[0]["id"], "--watch", "--json", env=deployment["local"]))
    assert shown["id"] == local[0]["id"] and shown["state"] == "succeeded"
    human = cairn("jobs", "show", local[0]["id"], env=deployment["local"])
    assert human.returncode == 0 and "files_seen" in human.stdout
    missing = cairn("jobs", "show", "no-such-job", env=deployment["local"])
    assert missing.returncode != 0 and "no job" in missing.stderr


def test_cancel_a_queued_job_local_and_remote_and_refuse_finished_ones(deployment):
    catalog = deployment["services"].catalog
    queued = [catalog.create_job(None, "beta", "index") for _ in range(2)]
    # by the start of the id, as `cairn jobs` shows it (the server's job list resolves it)
    remote = ok_json(cairn("jobs", "cancel", queued[0][:10], "--json", env=deployment["remote"]))
    local = ok_json(cairn("jobs", "cancel", queued[1][:10], "--json", env=deployment["local"]))
    assert remote["state"] == local["state"] == "cancelling" and [remote["id"], local["id"]] == queued
    shown = ok_json(cairn("jobs", "show", queued[0][:10], "--json", env=deployment["remote"]))
    assert shown["id"] == queued[0]
    done = catalog.list_jobs(state="succeeded", limit=1)[0].id
    refused = cairn("jobs", "cancel", done, env=deployment["remote"])
    assert refused.returncode != 0 and "409" in refused.stderr
    audit = httpx.get(f"{deployment['url']}/v1/audit", params={"action": "jobs.cancel"},
                      headers=auth(deployment["token"])).json()
    assert queued[0] in {row["target"] for row in audit}
    for job_id in queued:
        catalog.update_job(job_id, state="cancelled")


def test_cancel_a_running_job_over_the_api_stops_it_after_its_batch(deployment):
    services, url, headers = deployment["services"], deployment["url"], auth(deployment["token"])
    with services.pipeline.write_lock:  # the job starts, then waits to write its first batch
        job = httpx.post(f"{url}/v1/sources/alpha/reindex", json={"full": True}, headers=headers).json()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/v1/jobs/{job['id']}", headers=headers).json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        cancelling = httpx.post(f"{url}/v1/jobs/{job['id']}/cancel", headers=headers)
        assert cancelling.status_code == 202 and cancelling.json()["state"] == "cancelling"
    while (final := httpx.get(f"{url}/v1/jobs/{job['id']}", headers=headers).json())["state"] == "cancelling":
        assert time.monotonic() < deadline + 30
        time.sleep(0.05)
    assert final["state"] == "cancelled" and final["finished_at"]
    assert services.catalog.get_source("alpha").state == "idle"
    assert reconcile_source(services.pipeline, "alpha", repair=False).total == 0


def test_reindex_since_remote_and_bad_windows(deployment):
    summary = ok_json(cairn("reindex", "beta", "--since", "2d", "--json", env=deployment["remote"]))
    assert summary["source"] == "beta"
    job = deployment["services"].catalog.list_jobs(source="beta", limit=1)[0]
    assert job.kind == "reindex" and job.params["since_seconds"] == 172800 and job.state == "succeeded"
    bad = cairn("reindex", "beta", "--since", "two days", env=deployment["remote"])
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    api = httpx.post(f"{deployment['url']}/v1/sources/beta/reindex", json={"since": "soon"},
                     headers=auth(deployment["token"]))
    assert api.status_code == 400


def test_job_routes_filter_and_validate(deployment):
    url, headers = deployment["url"], auth(deployment["token"])
    ok = httpx.get(f"{url}/v1/jobs", params={"state": "succeeded", "source": "alpha"}, headers=headers).json()
    assert ok and {(j["state"], j["source"]) for j in ok} == {("succeeded", "alpha")}
    assert httpx.get(f"{url}/v1/jobs", params={"state": "bogus"}, headers=headers).status_code == 400
    reader = token(deployment["services"], "reader", groups=["eng"])
    assert httpx.get(f"{url}/v1/jobs", headers=auth(reader)).status_code == 403
    assert httpx.post(f"{url}/v1/jobs/x/cancel", headers=auth(reader)).status_code == 403
    assert httpx.post(f"{url}/v1/jobs/no-such/cancel", headers=headers).status_code == 404


def test_schedule_a_source_over_http(deployment):
    proc = cairn("sources", "schedule", "beta", "--interval", "15m", env=deployment["remote"])
    assert proc.returncode == 0 and "15m00s" in proc.stdout
    from workers.maintenance import intervals, set_interval

    assert intervals(deployment["services"].catalog)["beta"] == 900
    back = httpx.put(f"{deployment['url']}/v1/sources/beta/schedule", json={"interval": None},
                     headers=auth(deployment["token"])).json()
    assert back == {"source": "beta", "interval_seconds": 3600, "default": True}
    set_interval(deployment["services"].catalog, "beta", None)


def test_prometheus_exposes_job_states_and_running_progress(deployment):
    body = httpx.get(f"{deployment['url']}/metrics", headers=auth(deployment["token"])).text
    succeeded = [line for line in body.splitlines() if line.startswith('cairn_jobs{state="succeeded"}')]
    assert succeeded and float(succeeded[0].split()[-1]) >= 2
    assert "cairn_running_job_eta_seconds" in body and 'cairn_running_job_items{count="files_seen"}' in body


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _assert_upgraded(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == _head()
        assert {"sources", "documents", "chunks", "jobs"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_upgrade_on_a_fresh_sqlite_catalog_is_idempotent(tmp_path):
    env = {"CAIRN_DATA_DIR": str(tmp_path / "fresh")}
    for _ in range(2):
        proc = cairn("db", "upgrade", env=env)
        assert proc.returncode == 0, proc.stderr
    _assert_upgraded(f"sqlite:///{tmp_path / 'fresh' / 'catalog.sqlite3'}")


def test_db_upgrade_on_a_fresh_postgresql_database(tmp_path):
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL here
        pytest.skip(f"PostgreSQL not reachable: {type(exc).__name__}")
    name = f"cairn_jobs_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        for _ in range(2):
            proc = cairn("db", "upgrade", env={"CAIRN_DATA_DIR": str(tmp_path), "CAIRN_DATABASE_URL": url})
            assert proc.returncode == 0, proc.stderr
        _assert_upgraded(url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_db_upgrade_reports_an_unreachable_database(tmp_path):
    proc = cairn("db", "upgrade", env={"CAIRN_DATA_DIR": str(tmp_path),
                                       "CAIRN_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"})
    assert proc.returncode == 1 and "upgrade failed" in proc.stderr and "Traceback" not in proc.stderr


def test_reconcile_through_the_server_repairs_drift_made_by_hand(deployment):
    services = deployment["services"]
    victim = min(services.fulltext.ids("beta"))
    with services.pipeline.write_lock:
        services.fulltext.delete("beta", [victim])
        services.fulltext.commit()
    drifts = ok_json(cairn("reconcile", "beta", "--json", env=deployment["remote"]))
    assert [(d["source"], d["missing_fulltext"], d["drift"], d["repaired"]) for d in drifts] == [("beta", 1, 1, True)]
    assert victim in services.fulltext.ids("beta")
    again = ok_json(cairn("reconcile", "--json", env=deployment["remote"]))
    assert sorted(d["source"] for d in again) == ["alpha", "beta"] and all(d["drift"] == 0 for d in again)
    job = services.catalog.list_jobs(source="beta", kind="reconcile", limit=1)[0]
    assert job.state == "succeeded" and job.counts["drift"] == 0


def test_ctrl_c_cancels_a_local_reindex_cleanly_after_its_batch(tmp_path, embedder):
    import signal

    from indexer.catalog import Catalog
    from indexer.catalog.db import make_engine

    files = {f"svc/handler_{i}.py": f'def handle_{i}(request):\n    """Handle request kind {i}."""\n'
             f'    return request.respond({i}, "kind {i} handled with care")\n' for i in range(150)}
    repo = git_repo(tmp_path / "big", files)
    env = {"CAIRN_DATA_DIR": str(tmp_path / "data")}
    settings = Settings(data_dir=tmp_path / "data")
    IndexServices.open(settings, embedder=embedder).close()  # create the catalog
    catalog = Catalog(make_engine(settings.catalog_url))
    catalog.upsert_source("big", "git", {"location": str(repo)}, ["public"])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
    proc = subprocess.Popen([CAIRN, "reindex", "big", "--json"], env={**clean, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not catalog.list_jobs(source="big", state="running"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "cancelled" in stderr
    assert catalog.list_jobs(source="big")[0].state == "cancelled"
    assert catalog.get_source("big").state == "idle"
    services = IndexServices.open(settings, embedder=embedder)
    try:
        assert reconcile_source(services.pipeline, "big", repair=False).total == 0
        assert services.catalog.pending_chunk_count("big") > 0  # it really stopped before the end
    finally:
        services.close()
