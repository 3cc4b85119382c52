"""The Celery app (the one allowed global): a broker when configured, eager in-process otherwise.

Tasks reach the index through `services_for(app)`: the process that owns the index attaches its
IndexServices with `attach_services`; a worker process opens its own on first use."""
from __future__ import annotations

import threading

from celery import Celery, signals

from indexer.services import IndexServices
from indexer.settings import Settings

app = Celery("cairn", include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_routes={"cairn.sync_source": {"queue": "sync"}, "cairn.index_batch": {"queue": "embed"},
                 "cairn.delete_documents": {"queue": "embed"}},
)
_lock = threading.Lock()


def configure(settings: Settings) -> Celery:
    """Point the app at the configured broker, or run every task eagerly in-process."""
    if settings.celery_broker_url:
        app.conf.update(broker_url=settings.celery_broker_url, task_always_eager=False)
    else:
        app.conf.update(broker_url="memory://", task_always_eager=True, task_eager_propagates=True)
    app.conf.cairn_settings = settings
    return app


def attach_services(services: IndexServices) -> None:
    app.conf.cairn_services = services


def services_for(celery: Celery) -> IndexServices:
    with _lock:
        services = celery.conf.get("cairn_services")
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
