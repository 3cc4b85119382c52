"""A small HTTP client for a running Cairn server, used by the CLI when CAIRN_URL/--url is set."""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import httpx

from indexer.models import Principal
from retrieval.permissions import Scope

FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")


class RemoteError(RuntimeError):
    """The server answered with an error (its message is kept) or could not be reached (`status` 0).
    `hint` says what to do about it, for the CLI's error line."""

    def __init__(self, message: str, status: int = 0, hint: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.hint = hint


# What to do about an answer, by status (the message already says what is wrong).
HINTS = {
    0: "is the server running there? Check --url / CAIRN_URL, or leave both unset to work on the local data "
       "directory",
    401: "check CAIRN_TOKEN: it is missing, mistyped, revoked or expired (`cairn tokens create` makes one)",
    403: "this needs an admin token (`cairn tokens create --admin`)",
}


class CairnClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.http.base_url}: {exc}", 0, HINTS[0]) from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise RemoteError(f"{resp.status_code}: {detail}", resp.status_code, HINTS.get(resp.status_code, ""))
        return resp.json()

    def search(self, query: str, limit: int, sources: list[str], **scope: Any) -> dict:
        return self._call("POST", "/v1/search", json={"query": query, "limit": limit, "sources": sources, **scope})

    def locate(self, query: str, limit: int, sources: list[str], **options: Any) -> dict:
        return self._call("POST", "/v1/locate", json={"query": query, "limit": limit, "sources": sources, **options})

    def sources(self) -> list[dict]:
        return self._call("GET", "/v1/sources")

    def add_source(self, body: dict) -> dict:
        return self._call("POST", "/v1/sources", json=body)

    def change_source(self, name: str, body: dict) -> dict:
        """PATCH the source: only the keys given change; returns the source, what changed and the jobs."""
        return self._call("PATCH", f"/v1/sources/{name}", json=body)

    def remove_source(self, name: str) -> dict:
        return self._call("DELETE", f"/v1/sources/{name}", timeout=900.0)  # waits for a running job to stop

    def reindex(self, name: str, full: bool = False, since: str | None = None) -> dict:
        body: dict[str, Any] = {"full": full} | ({"since": since} if since else {})
        return self._call("POST", f"/v1/sources/{name}/reindex", json=body)

    def set_schedule(self, name: str, interval: str | None) -> dict:
        return self._call("PUT", f"/v1/sources/{name}/schedule", json={"interval": interval})

    def webhook(self, name: str, rotate: bool = False) -> dict:
        """The source's webhook URL, and its secret when new or rotated (shown once)."""
        return self._call("POST", f"/v1/sources/{name}/webhook", json={"rotate": rotate})

    def reconcile(self, source: str | None = None, repair: bool = True) -> list[dict]:
        return self._call("POST", "/v1/reconcile", json={"source": source, "repair": repair})

    def permissions(self, name: str) -> dict:
        return self._call("POST", f"/v1/sources/{name}/permissions")

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def backup(self, path: str) -> dict:
        """A backup written by the server into `path` on its own disk (under its CAIRN_BACKUP_DIR)."""
        return self._call("POST", "/v1/admin/backup", json={"path": path}, timeout=3600.0)  # big indexes take a while

    def users(self) -> list[dict]:
        return self._call("GET", "/v1/users")

    def user(self, name: str) -> dict:
        """A user by subject, username or verified email: links and the principals they hold now."""
        return self._call("GET", f"/v1/users/{quote(name, safe='')}")

    def link_user(self, name: str, realm: str, account: str, display: str = "") -> dict:
        return self._call("PUT", f"/v1/users/{quote(name, safe='')}/links/{quote(realm, safe='')}",
                          json={"account": account, "display": display})

    def unlink_user(self, name: str, realm: str) -> dict:
        return self._call("DELETE", f"/v1/users/{quote(name, safe='')}/links/{quote(realm, safe='')}")

    def jobs(self, source: str | None = None, state: str | None = None, limit: int = 100) -> list[dict]:
        params = {k: v for k, v in {"source": source, "state": state, "limit": limit}.items() if v is not None}
        return self._call("GET", "/v1/jobs", params=params)

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def wait(self, job_id: str, poll: float = 0.5, on_update: Any = None) -> dict:
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job["state"] in FINISHED:
                return job
            time.sleep(poll)


class RemoteSearcher:
    """`cairn eval --url`: the evaluation's searcher over a server. Searches run as the token's user (what
    that user may read), not as the in-process operator; `principal` is ignored for that reason."""

    MAX_LIMIT = 100  # the API's cap on one search

    def __init__(self, client: CairnClient) -> None:
        self.client = client

    def search(self, text: str, principal: Principal | None, scope: Scope = Scope(), limit: int = 10) -> Any:
        body = self.client.search(text, min(limit, self.MAX_LIMIT), list(scope.sources))
        return SimpleNamespace(hits=[SimpleNamespace(**hit) for hit in body["hits"]])
