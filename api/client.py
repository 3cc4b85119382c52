"""A small HTTP client for a running Cairn server, used by the CLI when CAIRN_URL/--url is set."""
from __future__ import annotations

import time
from typing import Any

import httpx


class RemoteError(RuntimeError):
    """The server answered with an error (its message is kept) or could not be reached."""


class CairnClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.http.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise RemoteError(f"{resp.status_code}: {detail}")
        return resp.json()

    def search(self, query: str, limit: int, sources: list[str], **scope: Any) -> dict:
        return self._call("POST", "/v1/search", json={"query": query, "limit": limit, "sources": sources, **scope})

    def sources(self) -> list[dict]:
        return self._call("GET", "/v1/sources")

    def add_source(self, body: dict) -> dict:
        return self._call("POST", "/v1/sources", json=body)

    def reindex(self, name: str, full: bool = False) -> dict:
        return self._call("POST", f"/v1/sources/{name}/reindex", json={"full": full})

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def wait(self, job_id: str, poll: float = 0.5, on_update: Any = None) -> dict:
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(poll)
