"""`cairn backup --url` asks a running server for a backup under its CAIRN_BACKUP_DIR; `cairn restore`
puts it into a new data directory that answers searches exactly as the server did."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_harness import auth, serve, token

from api.admin_routes import backup_target
from api.app import create_app
from api.errors import Conflict
from tests.conftest import KEPT_ENV

CAIRN = str(Path(sys.executable).with_name("cairn"))


@pytest.fixture(scope="module")
def backups(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("backups")


@pytest.fixture(scope="module")
def url(corpus, backups):
    with serve(create_app(corpus.settings.model_copy(update={"backup_dir": backups}), services=corpus)) as base:
        yield base


def cairn(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_") or k in KEPT_ENV}
    return subprocess.run([CAIRN, *args], check=False, capture_output=True, text=True, env=clean | env, timeout=300)


def test_cli_backup_through_the_server_then_restore_gives_the_same_search_results(url, corpus, backups, tmp_path):
    admin = token(corpus, user="root", admin=True)
    made = cairn("backup", str(backups / "nightly"), "--json", CAIRN_URL=url, CAIRN_TOKEN=admin)
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["counts"]["chunks"] == corpus.catalog.counts()["chunks"] and summary["file_count"] > 3
    assert (backups / "nightly" / "manifest.json").is_file()
    audit = httpx.get(url + "/v1/audit", params={"action": "admin.backup"}, headers=auth(admin)).json()
    assert audit and audit[0]["target"] == str(backups / "nightly")

    data_dir = str(tmp_path / "restored")
    restored = cairn("restore", str(backups / "nightly"), "--json", CAIRN_DATA_DIR=data_dir)
    assert restored.returncode == 0, restored.stderr
    for query in ("backoff delay with jitter", "render invoice", "rollout canary"):
        served = cairn("search", query, "--json", CAIRN_URL=url, CAIRN_TOKEN=admin)
        local = cairn("search", query, "--json", CAIRN_DATA_DIR=data_dir)
        assert served.returncode == 0 and local.returncode == 0, served.stderr + local.stderr
        assert json.loads(local.stdout)["results"] == json.loads(served.stdout)["results"] != []
    again = cairn("restore", str(backups / "nightly"), CAIRN_DATA_DIR=data_dir)
    assert again.returncode == 1 and "--force" in again.stderr


@pytest.mark.parametrize("path, status", [("relative/dir", 400), ("/etc/cairn-backup", 400),
                                          ("{backups}/../escape", 400), ("{backups}", 400)])
def test_backup_paths_outside_the_backup_dir_are_refused(url, corpus, backups, path, status):
    resp = httpx.post(url + "/v1/admin/backup", json={"path": path.format(backups=backups)},
                      headers=auth(token(corpus, admin=True)))
    assert resp.status_code == status and resp.json()["detail"]
    assert not Path("/etc/cairn-backup").exists() and not (backups.parent / "escape").exists()


def test_backup_needs_an_admin_and_a_configured_backup_dir(url, corpus, tmp_path):
    reader = httpx.post(url + "/v1/admin/backup", json={"path": "/tmp/x"}, headers=auth(token(corpus, groups=["eng"])))
    assert reader.status_code == 403
    with pytest.raises(Conflict, match="CAIRN_BACKUP_DIR"):  # the server's setting unset: no API backups at all
        backup_target(str(tmp_path / "b"), None)
