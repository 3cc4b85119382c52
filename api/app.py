"""The FastAPI app factory: `create_app(settings)` builds the same app for `cairn serve` and tests."""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api import errors, web
from api.audit import AuditLog
from api.continue_provider import router as context_router
from api.documents import router as documents_router
from api.limits import BodySizeLimit, RateLimit
from api.mcp_server import MCPRoute, build_mcp, session_manager
from api.observability import (
    CatalogCollector,
    Metrics,
    ObservedSearcher,
    RequestObserver,
    metrics_router,
    remember_principal,
)
from api.routes import router
from api.tokens import TokenStore
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.rerank import build_reranker
from retrieval.search import HybridSearcher
from workers import celery_app
from workers.jobs import new_job, run_sync_job

log = logging.getLogger(__name__)

JobObserver = Callable[[str, str, float], None]  # (kind, outcome, seconds)


class JobRunner:
    """Runs sync jobs of the embedded node on one background thread (one writer at a time)."""

    def __init__(self, services: IndexServices, observe: JobObserver | None = None) -> None:
        self.services = services
        self.observe = observe
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-jobs")

    def submit(self, source: str, full: bool = False) -> str:
        job_id = new_job(self.services, source, "reindex" if full else "index")
        self.pool.submit(self._run, source, job_id, full)
        return job_id

    def _run(self, source: str, job_id: str, full: bool) -> None:
        started = time.perf_counter()
        outcome = "failed"
        try:
            run_sync_job(self.services, source, job_id=job_id, full=full)
            outcome = "succeeded"
        except Exception:  # recorded on the job by run_sync_job; the thread must survive
            log.warning("job %s failed", job_id)
        finally:
            if self.observe:
                self.observe("reindex" if full else "index", outcome, time.perf_counter() - started)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)
def build_searcher(services: IndexServices) -> HybridSearcher:
    s = services.settings
    options = {"model": s.cross_encoder_model} if s.reranker == "cross-encoder" else {}
    return HybridSearcher(services.catalog, services.fulltext, services.vectors, services.embedder,
                          build_reranker(s.reranker, **options), candidates=s.candidates,
                          max_hits_per_file=s.max_hits_per_file)


def create_app(settings: Settings, services: IndexServices | None = None) -> FastAPI:
    """Build the app. Pass `services` to share an already open index (tests, `cairn demo`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        svc = services or IndexServices.open(settings)
        celery_app.configure(settings)
        celery_app.attach_services(svc)
        app.state.services = svc
        app.state.tokens = TokenStore(svc.catalog.engine)
        app.state.audit = AuditLog(svc.catalog.engine, keep_query_text=settings.audit_query_text)
        app.state.searcher = ObservedSearcher(build_searcher(svc), app.state.metrics)
        app.state.jobs = JobRunner(svc, observe=app.state.metrics.job_finished)
        app.state.mcp_manager = session_manager(app.state.mcp)
        try:
            async with app.state.mcp_manager.run():
                yield
        finally:
            app.state.jobs.shutdown()
            app.state.searcher.close()
            if owned:
                svc.close()

    app = FastAPI(title="Cairn", version="0.1.0", lifespan=lifespan,
                  description="Organization-wide context engine: hybrid code search under permissions.")
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.metrics.registry.register(CatalogCollector(app))
    app.state.mcp = build_mcp(app)
    errors.install(app)
    seen = [Depends(remember_principal)]  # the caller, resolved once per request, for the request log
    for routes in (router, context_router, documents_router):
        app.include_router(routes, dependencies=seen)
    app.include_router(metrics_router)
    web.install(app)  # the web UI's pages and static files (not in the OpenAPI schema)
    app.router.routes.append(MCPRoute(app))
    # Outermost last: the observer sees every answer, including 413 and 429.
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute,
                       on_refuse=app.state.metrics.rate_limited.inc)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestObserver, metrics=app.state.metrics)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app
