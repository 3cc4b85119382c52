"""The Celery app (the one allowed global): a broker when configured, eager in-process otherwise.

Tasks reach the index through `services_for(app)`: the process that owns the index attaches its
IndexServices with `attach_services`; a worker process opens its own on first use."""
from __future__ import annotations

import threading

from celery import Celery, signals

from indexer.services import IndexServices
from indexer.settings import Settings
from workers.context import WorkerContext

app = Celery("cairn", include=["workers.tasks", "workers.maintenance"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_proc_alive_timeout=120,  # a pool process loads the embedding model before it reports ready
    task_serializer="json",
    accept_content=["json"],
    task_routes={"cairn.sync_source": {"queue": "sync"}, "cairn.index_batch": {"queue": "embed"},
                 "cairn.delete_documents": {"queue": "embed"}, "cairn.embed_batch": {"queue": "embed"},
                 "cairn.apply_batch": {"queue": "index"}},
)
_lock = threading.Lock()


def configure(settings: Settings) -> Celery:
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
    app.conf.cairn_settings = settings
    return app


def attach_services(services: IndexServices) -> None:
    app.conf.cairn_services = services


def context_for(celery: Celery) -> WorkerContext:
    """What crawl and embed tasks use: from the attached IndexServices, or opened without the stores."""
    with _lock:
        services = celery.conf.get("cairn_services")
        opened_for, ctx = celery.conf.get("cairn_context") or (None, None)
        if ctx is None or opened_for is not services:
            settings = celery.conf.get("cairn_settings") or Settings()
            ctx = WorkerContext.from_services(services) if services is not None else WorkerContext.open(settings)
            celery.conf.cairn_context = (services, ctx)
        return ctx


def services_for(celery: Celery) -> IndexServices:
    with _lock:
        services = celery.conf.get("cairn_services")
        if services is not None and not services.is_current():
            # Another process swapped in a new index generation: write to that one from now on.
            services.close()
            services = None
        if services is None:
            settings = celery.conf.get("cairn_settings") or Settings()
            services = IndexServices.open(settings)
            celery.conf.cairn_services = services
        return services


@signals.worker_init.connect
@signals.beat_init.connect
def _configure_from_environment(**_kwargs: object) -> None:
    """A `celery worker`/`celery beat` process builds its settings from CAIRN_* once, at start-up."""
    if app.conf.get("cairn_settings") is None:
        configure(Settings())


@signals.celeryd_after_setup.connect
def _note_embed_queue(sender: object, instance: object, **_kwargs: object) -> None:
    """A worker that consumes `embed` loads the model in each pool process as it starts, not inside
    its first batch (which would then run longer than it should, and risk its visibility timeout)."""
    queues = getattr(getattr(instance, "app", app).amqp.queues, "consume_from", None) or {}
    app.conf.cairn_warm_embedder = "embed" in queues


@signals.worker_process_init.connect
def _warm_embedder(**_kwargs: object) -> None:
    if app.conf.get("cairn_warm_embedder"):
        context_for(app).embedder.embed_query("warm-up")  # loads the model and its ONNX session (not cached)
