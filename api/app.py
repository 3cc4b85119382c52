"""The FastAPI app factory: `create_app(settings)` builds the same app for `cairn serve` and tests."""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Depends, FastAPI

from api import apidocs, errors, scim, web, webhooks
from api.admin_routes import router as admin_router
from api.audit import AuditLog
from api.auth import metadata_router
from api.continue_provider import router as context_router
from api.documents import router as documents_router
from api.history import router as history_router
from api.limits import BodySizeLimit, RateLimit
from api.locate import router as locate_router
from api.mcp_server import MCPRoute, build_mcp, session_manager
from api.observability import (
    CatalogCollector,
    JobsCollector,
    Metrics,
    ObservedSearcher,
    PermissionsCollector,
    RequestObserver,
    metrics_router,
    remember_principal,
)
from api.oidc import provider_from
from api.personal_tokens import router as personal_tokens_router
from api.provisioning import Directory
from api.routes import router
from api.sessions import SessionStore
from api.tokens import TokenStore
from api.users import router as users_router
from indexer.generations.serving import GenerationReader
from indexer.identity.resolver import IdentityResolver
from indexer.identity.store import IdentityStore
from indexer.services import IndexServices
from indexer.settings import Settings
from indexer.stores.backends import vector_backend
from retrieval.permissions import StaleSources
from retrieval.searcher import build_searcher
from workers import celery_app
from workers.jobs import JobStopped, new_job, run_sync_job
from workers.maintenance import EmbeddedScheduler

log = logging.getLogger(__name__)

JobObserver = Callable[[str, str, float], None]  # (kind, outcome, seconds)


class JobRunner:
    """Runs sync jobs of the embedded node on one background thread (one writer at a time).

    A shutdown interrupts the running job after its current batch (state `interrupted`) and leaves
    queued ones `queued`; `resume` at the next start runs them again under the same ids, as does it
    for jobs a killed process left `running`."""

    SYNC_KINDS = ("index", "reindex")

    def __init__(self, services: IndexServices, observe: JobObserver | None = None) -> None:
        self.services = services
        self.observe = observe
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-jobs")
        self.stopping: str | None = None  # what the running job's should_stop answers

    def submit(self, source: str, full: bool = False, since: float | None = None) -> str:
        """Queue a sync; `since` (seconds) re-reads what the source changed in that window first."""
        params = {"full": full} | ({"since_seconds": since} if since else {})
        job_id = new_job(self.services, source, "reindex" if full or since else "index", params)
        if self.services.settings.celery_broker_url:  # distributed: the `sync` queue runs it
            from workers.tasks import submit_sync

            submit_sync(source, job_id, full)
            return job_id
        self.pool.submit(self._run, source, job_id, full, since)
        return job_id

    def submit_call(self, call: Callable[[], object]) -> None:
        """Run other index work (e.g. reconciliation) on the same single writer thread."""
        self.pool.submit(call)

    def _run(self, source: str, job_id: str, full: bool, since: float | None = None) -> None:
        started = time.perf_counter()
        outcome = "failed"
        try:
            run_sync_job(self.services, source, job_id=job_id, full=full,
                         since=dt.timedelta(seconds=since) if since else None, should_stop=lambda: self.stopping)
            outcome = "succeeded"
        except JobStopped as stopped:
            outcome = stopped.state
        except Exception:  # noqa: BLE001 - recorded on the job by run_sync_job; the thread must survive
            log.warning("job %s failed", job_id)
        finally:
            if self.observe:
                self.observe("reindex" if full else "index", outcome, time.perf_counter() - started)

    def resume(self) -> list[str]:
        """Run again, oldest first, the sync jobs an earlier process left queued, running (it was
        killed) or interrupted (it was stopped); a cancel it never got to finish is finished."""
        catalog = self.services.catalog
        left = catalog.list_jobs(state=("queued", "running", "interrupted", "cancelling"), limit=10_000)
        resumed: list[str] = []
        for job in reversed([j for j in left if j.kind in self.SYNC_KINDS]):  # listed newest first
            if job.state == "cancelling":
                catalog.update_job(job.id, state="cancelled")
                continue
            since = job.params.get("since_seconds")
            log.info("resuming job %s (%s of %s, left %s)", job.id, job.kind, job.source, job.state)
            self.pool.submit(self._run, job.source, job.id, bool(job.params.get("full")), since)
            resumed.append(job.id)
        return resumed

    def interrupt(self) -> None:
        """The running job stops after the batch it is applying (safe to call from a signal handler)."""
        self.stopping = "interrupted"

    def shutdown(self) -> None:
        self.interrupt()
        self.pool.shutdown(wait=True, cancel_futures=True)  # queued jobs stay `queued` for `resume`


def follow_generation_swap(app: FastAPI, services: IndexServices) -> None:
    """After a generation swap: new searches use the new generation; the old searcher is closed
    once the searches it is running end (called under the index's write lock)."""
    retired = app.state.searcher.inner
    app.state.searcher.inner = GenerationReader(build_searcher(services, app.state.stale_sources))
    retired.retire()


@dataclass
class IndexNodeThreads:
    """What a node applying the `index` queue runs beside the API: the consumer and the stall sweeper."""

    consumer: object | None = None
    sweeper: object | None = None

    def stop(self) -> None:
        for part in (self.sweeper, self.consumer):
            if part is not None:
                part.stop()  # type: ignore[attr-defined]


def start_index_consumer(settings: Settings, services: IndexServices, consume: bool | None = None) -> IndexNodeThreads:
    """With a broker this node may apply the `index` queue. With Qdrant Edge only the index owner does
    (`consume`, decided by its lease: api/node.py); with a Qdrant server unless dedicated `-Q index` workers
    do. CAIRN_INDEX_QUEUE_CONSUMER=false always keeps this node out. The node consuming `index` also
    sweeps stalled tasks (workers/task_leases.py); after a takeover it first puts back the batches the
    previous owner held unacked."""
    if not settings.celery_broker_url or consume is False:
        return IndexNodeThreads()
    from workers.context import WorkerContext
    from workers.index_queue import INDEX_QUEUE, IndexQueueConsumer
    from workers.task_leases import StallSweeper, redeliver

    ctx = WorkerContext.from_services(services)
    sweeper = StallSweeper(celery_app.app, ctx, settings.task_stall_seconds).start()
    if not settings.index_queue_consumer:  # a Qdrant server's API node: `-Q index` workers apply batches
        return IndexNodeThreads(sweeper=sweeper)
    if vector_backend(settings).owner_writes:  # the only consumer of `index`: what is unacked, a dead owner held
        held = redeliver(celery_app.app, queue=INDEX_QUEUE)
        if held:
            log.warning("put back %d index-queue messages the previous index owner held", len(held))
    return IndexNodeThreads(IndexQueueConsumer(celery_app.app, ctx, services.pipeline).start(), sweeper)


def create_app(settings: Settings, services: IndexServices | None = None, consume_index: bool | None = None) -> FastAPI:
    """Build the app. Pass `services` to share an already open index (tests, `cairn demo`); `consume_index`
    says whether this node owns the index queue (None: it does whenever settings allow)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        svc = services or IndexServices.open(settings)
        celery_app.configure(settings)
        celery_app.attach_services(svc)
        app.state.services = svc
        # A person's principals (links, synced memberships, IdP groups), resolved per request, briefly cached.
        app.state.identity = IdentityResolver(IdentityStore(svc.catalog.engine), settings.admin_groups,
                                              settings.identity_cache_seconds)
        app.state.tokens = TokenStore(svc.catalog.engine, app.state.identity)
        app.state.sessions = SessionStore(svc.catalog.engine, app.state.tokens,
                                          dt.timedelta(seconds=settings.session_max_age_seconds),
                                          app.state.identity)
        # People and groups the IdP provisions over SCIM; a sign-in ties a provisioned user to its `sub`.
        app.state.directory = Directory(svc.catalog.engine, app.state.tokens, settings.admin_groups)
        app.state.sessions.on_sign_in = app.state.directory.claim
        app.state.audit = AuditLog(svc.catalog.engine, keep_query_text=settings.audit_query_text)
        # Sources whose access is too old to serve their restricted documents (fail closed), shared by
        # the searcher and the document routes, read from the catalog every few seconds.
        app.state.stale_sources = StaleSources(svc.catalog, settings.permission_max_staleness)
        app.state.searcher = ObservedSearcher(GenerationReader(build_searcher(svc, app.state.stale_sources)),
                                              app.state.metrics)
        if svc.generations is not None:  # a new index generation builds in the background, then swaps in
            svc.generations.on_swap(lambda: follow_generation_swap(app, svc))
            svc.generations.start()
        app.state.jobs = JobRunner(svc, observe=app.state.metrics.job_finished)
        if not settings.celery_broker_url:  # with a broker, the workers' queues hold the jobs
            app.state.jobs.resume()
        app.state.index_node = start_index_consumer(settings, svc, consume_index)
        app.state.index_consumer = app.state.index_node.consumer
        # Without a broker nothing else schedules syncs: this process does (a timer; beat does it otherwise).
        app.state.scheduler = EmbeddedScheduler(svc, app.state.jobs.submit, app.state.jobs.submit_call)
        if not settings.celery_broker_url:
            app.state.scheduler.start()
        app.state.mcp_manager = session_manager(app.state.mcp)
        try:
            async with app.state.mcp_manager.run():
                yield
        finally:
            if svc.generations is not None:
                svc.generations.stop()  # resumes on the next start
            app.state.scheduler.stop()
            app.state.index_node.stop()
            app.state.jobs.shutdown()
            app.state.searcher.close()
            if app.state.oidc is not None:
                app.state.oidc.http.close()
            if owned:
                svc.close()

    # The schema and Swagger UI are served by api/apidocs.py: behind sign-in, with local assets.
    app = FastAPI(title="Cairn", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None,
                  description="Organization-wide context engine: hybrid code search under permissions.")
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.metrics.registry.register(CatalogCollector(app))
    app.state.metrics.registry.register(JobsCollector(app))
    app.state.metrics.admin_registry.register(PermissionsCollector(app))
    app.state.mcp = build_mcp(app)
    # The organization's OpenID provider (None without CAIRN_OIDC_ISSUER): web sign-in and JWT bearer tokens.
    app.state.oidc = provider_from(settings)
    errors.install(app)
    seen = [Depends(remember_principal)]  # the caller, resolved once per request, for the request log
    for routes in (router, documents_router, history_router, locate_router, admin_router, users_router,
                   personal_tokens_router):
        app.include_router(routes, dependencies=seen)
    app.include_router(context_router)  # resolves its caller itself: a refusal is an item for Continue
    app.include_router(metrics_router)
    app.include_router(metadata_router)  # /.well-known/oauth-protected-resource (RFC 9728)
    scim.install(app, settings)  # /scim/v2: the IdP provisions and deprovisions (404 without a secret)
    app.include_router(webhooks.router)  # webhooks authenticate by the source's secret, admins by token
    apidocs.install(app)  # /openapi.json and /docs (Swagger UI from local assets), behind sign-in
    web.install(app)  # the web UI's pages and static files (not in the OpenAPI schema)
    app.router.routes.append(MCPRoute(app))
    # Outermost last: the observer sees every answer, including 413 and 429.
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute,
                       on_refuse=app.state.metrics.rate_limited.inc)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestObserver, metrics=app.state.metrics)

    @app.get("/healthz")
    def healthz() -> dict:
        # A node of a deployment with one index owner says it is that owner (a replica says "replica").
        return {"status": "ok", "role": "owner"} if consume_index else {"status": "ok"}

    return app
