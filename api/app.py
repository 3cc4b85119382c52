"""The FastAPI app factory: `create_app(settings)` builds the same app for `cairn serve` and tests."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from api import errors
from api.routes import router
from api.tokens import TokenStore
from indexer.services import IndexServices
from indexer.settings import Settings
from retrieval.rerank import build_reranker
from retrieval.search import HybridSearcher
from workers import celery_app
from workers.jobs import new_job, run_sync_job

log = logging.getLogger(__name__)


class JobRunner:
    """Runs sync jobs of the embedded node on one background thread (one writer at a time)."""

    def __init__(self, services: IndexServices) -> None:
        self.services = services
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-jobs")

    def submit(self, source: str, full: bool = False) -> str:
        job_id = new_job(self.services, source, "reindex" if full else "index")
        self.pool.submit(self._run, source, job_id, full)
        return job_id

    def _run(self, source: str, job_id: str, full: bool) -> None:
        try:
            run_sync_job(self.services, source, job_id=job_id, full=full)
        except Exception:  # recorded on the job by run_sync_job; the thread must survive
            log.warning("job %s failed", job_id)

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
        app.state.searcher = build_searcher(svc)
        app.state.jobs = JobRunner(svc)
        try:
            yield
        finally:
            app.state.jobs.shutdown()
            app.state.searcher.close()
            if owned:
                svc.close()

    app = FastAPI(title="Cairn", version="0.1.0", lifespan=lifespan,
                  description="Organization-wide context engine: hybrid code search under permissions.")
    errors.install(app)
    app.include_router(router)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app
