"""Prometheus metrics on a per-app registry, a searcher wrapper that times stages, and request logs."""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import principal
from indexer.generations.serving import Searcher
from indexer.models import Principal
from retrieval.permissions import Scope as SearchScope
from retrieval.search import SearchResult

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric of one app, on its own registry (so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Metrics that name sources: rendered for admins only (`GET /v1/sources` lists a source only to
        # its readers, so a per-source label must not reach every token holder).
        self.admin_registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Histogram("cairn_http_request_duration_seconds", "HTTP request latency by route template.",
                                  ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.search_stages = Histogram("cairn_search_stage_seconds", "Time spent in each search stage.",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.search_results = Counter("cairn_search_results_total", "Hits returned by searches.", registry=r)
        self.search_partial = Counter("cairn_search_partial_total", "Searches answered without an engine that "
                                      "did not answer in time, by engine.", ["engine"], registry=r)
        self.jobs = Counter("cairn_jobs_finished_total", "Index jobs run by this process, by outcome.",
                            ["kind", "outcome"], registry=r)
        self.job_seconds = Histogram("cairn_job_duration_seconds", "Duration of index jobs run by this process.",
                                     ["kind"], buckets=(1, 5, 15, 60, 300, 900, 3600, 14400), registry=r)
        self.rate_limited = Counter("cairn_rate_limited_total", "Requests refused by the rate limit.", registry=r)
        self.tool_calls = Counter("cairn_mcp_tool_calls_total", "MCP tool calls by tool and outcome.",
                                  ["tool", "outcome"], registry=r)

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None:
        self.jobs.labels(kind, outcome).inc()
        self.job_seconds.labels(kind).observe(seconds)

    def render(self, admin: bool = False) -> bytes:
        return generate_latest(self.registry) + (generate_latest(self.admin_registry) if admin else b"")


class CatalogCollector:
    """Index size and freshness, read from the catalog at scrape time (totals only: metrics are not
    filtered per caller, so they name no source; the per-source permissions freshness is
    PermissionsCollector's, rendered for admins only)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: the catalog exists only while the app runs

    def collect(self) -> Iterable[Metric]:
        services = getattr(self.app.state, "services", None)
        if services is None:
            return
        catalog = services.catalog
        counts = catalog.counts()
        rows = catalog.list_sources()
        for name, help_text, value in (
            ("cairn_sources", "Configured sources.", len(rows)),
            ("cairn_documents", "Documents in the index.", counts["documents"]),
            ("cairn_chunks", "Chunks in the index.", counts["chunks"]),
            ("cairn_skipped_files", "Files skipped with a recorded reason.", counts["skipped"]),
            ("cairn_failing_items", "Items whose last sync failed.", counts["failures"]),
        ):
            yield GaugeMetricFamily(name, help_text, value=value)
        now = dt.datetime.now(dt.UTC)
        ages = [(now - r.last_success_at).total_seconds() for r in rows if r.last_success_at]
        yield GaugeMetricFamily("cairn_oldest_sync_age_seconds", "Age of the least recently synced source.",
                                value=max(ages) if ages else 0.0)
        errors = sum(1 for r in rows if r.state == "error")
        yield GaugeMetricFamily("cairn_sources_in_error", "Sources whose last sync failed.", value=errors)
        degraded = sum(1 for r in rows if r.state == "degraded")
        yield GaugeMetricFamily("cairn_sources_degraded", "Sources whose last sync was partial (some listings "
                                "or items failed).", value=degraded)


class PermissionsCollector:
    """Per source (admins only, see Metrics.admin_registry): seconds since its access was last known good
    (+Inf when never) and whether it is stale. Only sources with permissions passes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        from indexer.pipeline import freshness

        services = getattr(self.app.state, "services", None)
        if services is None:
            return
        catalog = services.catalog

        fresh = freshness(catalog, self.app.state.settings.permission_max_staleness)
        age = GaugeMetricFamily("cairn_permission_sync_age_seconds", "Seconds since the source's access was "
                                "last refreshed (successful sync or permissions pass).", labels=["source"])
        stale = GaugeMetricFamily("cairn_permission_stale", "1 when the source's restricted documents are "
                                  "not served because its access is stale.", labels=["source"])
        for name, f in sorted(fresh.items()):
            if f.tracked:
                age.add_metric([name], float("inf") if f.age_seconds is None else f.age_seconds)
                stale.add_metric([name], 1.0 if f.stale else 0.0)
        yield age
        yield stale


class JobsCollector:
    """Jobs at scrape time: how many in each state, and the live progress of the running ones summed
    (files, chunks embedded, throughput, pending chunks) with the longest ETA. Totals only."""

    COUNTS = ("files_seen", "files_changed", "files_skipped", "files_deleted", "files_failed", "chunks_embedded")

    def __init__(self, app: Any) -> None:
        self.app = app

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        services = getattr(self.app.state, "services", None)
        if services is None:
            return
        from indexer.catalog.catalog import JOB_STATES

        by_state = services.catalog.job_state_counts()
        states = GaugeMetricFamily("cairn_jobs", "Jobs in the catalog by state.", labels=["state"])
        for state in JOB_STATES:
            states.add_metric([state], by_state.get(state, 0))
        yield states
        running = [j.counts or {} for j in services.catalog.list_jobs(state=("running", "cancelling"), limit=1000)]
        progress = GaugeMetricFamily("cairn_running_job_items", "Running jobs' counts, summed.", labels=["count"])
        for name in self.COUNTS:
            progress.add_metric([name], sum(c.get(name) or 0 for c in running))
        yield progress
        for name, key, help_text in (
            ("cairn_running_job_items_per_second", "items_per_second", "Files read per second by running jobs."),
            ("cairn_running_job_chunks_per_second", "chunks_per_second", "Chunks embedded per second by running jobs."),
            ("cairn_running_job_pending_chunks", "pending_chunks", "Chunks waiting to be embedded by running jobs."),
        ):
            yield GaugeMetricFamily(name, help_text, value=sum(c.get(key) or 0 for c in running))
        etas = [c["eta_seconds"] for c in running if c.get("eta_seconds") is not None]
        yield GaugeMetricFamily("cairn_running_job_eta_seconds", "Longest ETA of the running jobs (0: none known).",
                                value=max(etas) if etas else 0.0)


class ObservedSearcher:
    """A searcher that records its stage timings and result counts; same `search` contract."""

    def __init__(self, inner: Searcher[SearchScope, SearchResult], metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def search(self, text: str, principal: Principal | None, scope: SearchScope = SearchScope(),
               limit: int = 10) -> SearchResult:
        result = self.inner.search(text, principal, scope, limit=limit)
        for stage, seconds in result.timings.items():
            self.metrics.search_stages.labels(stage).observe(seconds)
        self.metrics.search_results.inc(len(result.hits))
        for engine in result.partial:
            self.metrics.search_partial.labels(engine).inc()
        return result

    def close(self) -> None:
        self.inner.close()


def remember_principal(request: Request, who: Principal = Depends(principal)) -> Principal:
    """Router dependency: keeps the caller (resolved once per request) for the request log."""
    request.state.principal = who
    return who


REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # a caller's X-Request-ID kept as given; else a new one


class RequestObserver:
    """ASGI middleware: latency histogram per route template and one structured log line per request
    (request id, method, route, status, duration, user id; never the query string, body or token).

    The route is the matched template (`/documents/{doc_id:path}`, `/mcp`, `/static`), never the path a
    client sent: paths name documents and a query string holds search text or a webhook's `?secret=`.
    The request id (the caller's `X-Request-ID` when it is a plain token, else a new one) is sent back in
    `X-Request-ID`, so a client's report can be matched to the line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id = _request_id(scope)

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self._observe(scope, state, status[0], time.perf_counter() - started)

    def _observe(self, scope: Scope, state: dict, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.requests.labels(scope["method"], route, str(status)).observe(seconds)
        who = state.get("principal")
        user = who.user if isinstance(who, Principal) else "-"
        fields = {"request_id": state["request_id"], "method": scope["method"], "route": route, "status": status,
                  "duration_ms": round(seconds * 1000, 1), "user": user}
        log.info("request id=%s method=%s route=%s status=%d duration_ms=%.1f user=%s", *fields.values(),
                 extra=fields)


def _request_id(scope: Scope) -> str:
    given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-request-id"), "")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
def metrics(request: Request, who: Principal = Depends(remember_principal)) -> Response:
    """Prometheus text format; any valid token may scrape the totals, an admin token also gets the
    per-source permissions freshness."""
    return Response(request.app.state.metrics.render(admin=who.admin), media_type=CONTENT_TYPE_PLAIN_0_0_4)
