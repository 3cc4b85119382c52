"""The Celery app (the one allowed global): a broker when configured, eager in-process otherwise.

Tasks reach the index through the app's `runtime` (a WorkerRuntime): `configure(settings)` hands it
the settings (the API app factory does; a `celery worker`/`celery beat` process does at start-up from
CAIRN_*), the process that owns the index attaches its IndexServices with `attach_services`, and a
worker process opens its own on first use."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, signals

from indexer.catalog import Catalog, SchemaError, open_catalog
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.context import WorkerContext

log = logging.getLogger(__name__)

MAINTENANCE = {"queue": "maintenance"}
TASK_ROUTES = {
    "cairn.sync_source": {"queue": "sync"}, "cairn.index_batch": {"queue": "embed"},
    "cairn.delete_documents": {"queue": "embed"}, "cairn.embed_batch": {"queue": "embed"},
    "cairn.apply_batch": {"queue": "index"}, "cairn.permission_pass": {"queue": "index"},
    **dict.fromkeys(("cairn.schedule_due", "cairn.permissions_due", "cairn.prune", "cairn.reconcile"), MAINTENANCE),
}
# Beat sends these (workers/maintenance.py): due syncs and due permissions passes every minute, pruning
# hourly, reconciling daily.
BEAT_SCHEDULE = {
    "schedule-due-syncs": {"task": "cairn.schedule_due", "schedule": 60.0, "options": MAINTENANCE},
    "permissions-due": {"task": "cairn.permissions_due", "schedule": 60.0, "options": MAINTENANCE},
    "prune": {"task": "cairn.prune", "schedule": 3600.0, "options": MAINTENANCE},
    "reconcile": {"task": "cairn.reconcile", "schedule": 86400.0, "options": MAINTENANCE},
}


@dataclass
class WorkerRuntime:
    """What this process's tasks work with: its settings, the IndexServices of the index it writes
    (attached by the index owner, or opened on first use), the lighter context of crawl and embed
    tasks, and the catalog alone for maintenance."""

    settings: Settings | None = None
    services: IndexServices | None = None
    warm_embedder: bool = False  # a worker consuming `embed` loads the model as each pool process starts
    _context: tuple[IndexServices | None, WorkerContext] | None = None
    _catalog: Catalog | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configured(self) -> Settings:
        if self.settings is None:
            raise RuntimeError("the Celery app has no settings: call workers.celery_app.configure(settings) first")
        return self.settings

    def context(self) -> WorkerContext:
        """What crawl and embed tasks use: from the attached IndexServices, or opened without the stores."""
        with self._lock:
            services = self.services
            opened_for, ctx = self._context or (None, None)
            if ctx is None or opened_for is not services:
                ctx = WorkerContext.from_services(services) if services is not None else WorkerContext.open(self.configured())
                self._context = (services, ctx)
            return ctx

    def index_services(self) -> IndexServices:
        """The open index, reopened when another process swapped in a new generation."""
        with self._lock:
            services = self.services
            if services is not None and not services.is_current():
                # Another process swapped in a new index generation: write to that one from now on.
                services.close()
                services = None
            if services is None:
                services = IndexServices.open(self.configured())
                self.services = services
            return services

    def catalog(self) -> Catalog:
        """The catalog alone: scheduling and pruning need no index stores (a maintenance worker may have none)."""
        with self._lock:
            if self.services is not None:
                return self.services.catalog
            if self._catalog is None:
                self._catalog = open_catalog(self.configured().catalog_url)
            return self._catalog


class CairnCelery(Celery):
    """The Celery app with its typed runtime (instead of objects stashed in `conf`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runtime = WorkerRuntime()


def create_celery() -> CairnCelery:
    """The app with what never depends on settings: task modules, delivery guarantees, routes, beat."""
    celery = CairnCelery("cairn", include=["workers.tasks", "workers.maintenance"])
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_proc_alive_timeout=120,  # a pool process loads the embedding model before it reports ready
        task_serializer="json",
        accept_content=["json"],
        task_routes=TASK_ROUTES,
        beat_schedule=BEAT_SCHEDULE,
    )
    return celery


app = create_celery()


def runtime(celery: Celery) -> WorkerRuntime:
    """The runtime of a task's app (`self.app` in a bound task)."""
    if not isinstance(celery, CairnCelery):
        raise TypeError(f"expected the Cairn Celery app, got {celery!r}")
    return celery.runtime


def configure(settings: Settings) -> CairnCelery:
    """Point the app at the configured broker, or run every task eagerly in-process."""
    if settings.celery_broker_url:
        # Redis redelivers a message whose worker died unacked only after this many seconds; with a
        # short timeout the sweep for such messages must run often enough to notice (kombu: 100 s).
        timeout = settings.celery_visibility_timeout
        options = {"visibility_timeout": timeout, "unacked_restore_interval": max(1, min(10, timeout // 4)),
                   "unacked_restore_throttle": 1 if timeout <= 300 else 10}
        app.conf.update(broker_url=settings.celery_broker_url, task_always_eager=False,
                        broker_transport_options=options, result_backend_transport_options=options)
    else:
        app.conf.update(broker_url="memory://", task_always_eager=True, task_eager_propagates=True)
    app.runtime.settings = settings
    return app


def attach_services(services: IndexServices) -> None:
    app.runtime.services = services


def detach_services() -> None:
    """Forget the attached services (their owner closes them)."""
    app.runtime.services = None


def context_for(celery: Celery) -> WorkerContext:
    return runtime(celery).context()


def services_for(celery: Celery) -> IndexServices:
    return runtime(celery).index_services()


@signals.worker_init.connect
@signals.beat_init.connect
def _configure_from_environment(**_kwargs: object) -> None:
    """A `celery worker`/`celery beat` process builds its settings from CAIRN_* once, at start-up, and
    starts only on a catalog at this version's schema."""
    if app.runtime.settings is None:
        configure(Settings())
    require_schema(app.runtime.settings)


def require_schema(settings: Settings | None) -> None:
    """Exit with what to run when the catalog is not migrated (PostgreSQL is never upgraded by a worker: one
    `cairn db upgrade` does it; an embedded SQLite catalog is upgraded here like at every open)."""
    if settings is None:
        return
    try:
        open_catalog(settings.catalog_url).engine.dispose()
    except SchemaError as exc:
        log.critical("cannot start: %s", exc)
        raise SystemExit(f"cairn worker cannot start: {exc}") from None


@signals.celeryd_after_setup.connect
def _note_embed_queue(sender: object, instance: Any, **_kwargs: object) -> None:
    """A worker that consumes `embed` loads the model in each pool process as it starts, not inside
    its first batch (which would then run longer than it should, and risk its visibility timeout)."""
    queues = instance.app.amqp.queues.consume_from or {}
    app.runtime.warm_embedder = "embed" in queues


@signals.worker_process_init.connect
def _warm_embedder(**_kwargs: object) -> None:
    if app.runtime.warm_embedder:
        context_for(app).embedder.embed_query("warm-up")  # loads the model and its ONNX session (not cached)
