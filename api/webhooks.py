"""Webhooks: POST /v1/webhooks/{source} takes GitLab, Jira and Confluence events and queues a `webhook` job
that reads the named items again; POST /v1/sources/{name}/webhook (admin) makes the source's secret.

A source's secret is shown once and stored only as its SHA-256 (in the source row's config). An unknown
source, a source without a secret and a wrong or missing secret get the same 401, so the route tells
nobody which sources exist. The route only checks, parses and queues: it answers in milliseconds."""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.auth import admin
from api.errors import BadRequest, NotFound
from connectors.webhooks import (
    SECRET_KEY,
    WEBHOOK_KINDS,
    WebhookPayloadError,
    WebhookTargets,
    delivery_id,
    parse_event,
)
from indexer.catalog import Catalog
from indexer.models import Principal
from indexer.services import IndexServices
from indexer.settings import Settings
from workers.jobs import WEBHOOK_JOB, delivery_seen, run_webhook_job

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")

REFUSED = {"error": "Unauthorized", "detail": "unknown source or wrong webhook secret"}
# Compared against when the source has no secret, so every refusal costs the same work.
NO_SECRET = hashlib.sha256(b"no webhook secret").hexdigest()
SIGNATURES = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "sha512": hashlib.sha512}
RECENT_DELIVERIES = 10_000


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def webhook_url(base: str, source: str, kind: str, secret: str | None) -> str:
    """The URL to configure in the product. Jira and Confluence carry the secret in it (`?secret=`): Cairn
    keeps only its hash, so a signature alone could not be checked; GitLab sends it as X-Gitlab-Token."""
    url = f"{base.rstrip('/')}/v1/webhooks/{quote(source, safe='')}"
    if kind == "gitlab":
        return url
    return f"{url}?secret={quote(secret, safe='') if secret else '<secret>'}"


def make_secret(catalog: Catalog, name: str, rotate: bool) -> tuple[Any, str | None]:
    """The source row and its new secret (None when it already has one and `rotate` is false)."""
    row = catalog.get_source(name)
    if row is None:
        raise NotFound(f"no source named {name!r}")
    if row.kind not in WEBHOOK_KINDS:
        raise BadRequest(f"{row.kind} sources take no webhooks (kinds that do: {', '.join(WEBHOOK_KINDS)})")
    if row.config.get(SECRET_KEY) and not rotate:
        return row, None
    secret = new_secret()
    catalog.upsert_source(name, row.kind, {**row.config, SECRET_KEY: secret_digest(secret)}, row.access)
    log.info("webhook secret %s for source %s", "rotated" if rotate else "created", name)
    return row, secret


# -- checking a delivery ------------------------------------------------------------------------------

def _matches(stored: str, presented: str) -> bool:
    return hmac.compare_digest(secret_digest(presented), stored)


def verified_secret(kind: str, stored: str | None, headers: Mapping[str, str], query: Mapping[str, str],
                    body: bytes) -> bool:
    """Whether the delivery carries the source's secret: GitLab's X-Gitlab-Token; Jira's and Confluence's
    `?secret=` or `Authorization: Bearer`, whose body must then also match any X-Hub-Signature (HMAC)."""
    expected = stored or NO_SECRET
    if kind == "gitlab":
        offered = [headers.get("x-gitlab-token", "")]
    else:
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        offered = [query.get("secret", ""), bearer.strip() if scheme.lower() == "bearer" else ""]
    good = [s for s in offered if s and _matches(expected, s)]  # every candidate compared, in constant time
    if not (stored and good and kind in WEBHOOK_KINDS):
        return False
    signature = headers.get("x-hub-signature", "")
    return kind == "gitlab" or not signature or _signed(good[0], signature, body)


def _signed(secret: str, signature: str, body: bytes) -> bool:
    method, _, digest = signature.strip().partition("=")
    algorithm = SIGNATURES.get(method.lower())
    if algorithm is None or not digest:
        return False
    expected = hmac.new(secret.encode(), body, algorithm).hexdigest()
    return hmac.compare_digest(expected, digest.strip().lower())


# -- coalescing -------------------------------------------------------------------------------------

@dataclass
class _Pending:
    job_id: str
    targets: WebhookTargets
    deliveries: list[str] = field(default_factory=list)


class WebhookQueue:
    """Events of one source that arrive before its webhook job starts join that job; a delivery seen
    before (the product retried it) joins nothing. Jobs run on the index writer's thread."""

    def __init__(self, services: IndexServices, run: Callable[[Callable[[], object]], None],
                 request_sync: Callable[[str], str] | None) -> None:
        self.services = services
        self.run = run
        self.request_sync = request_sync
        self.lock = threading.Lock()
        self.pending: dict[str, _Pending] = {}
        self.recent: OrderedDict[str, str] = OrderedDict()  # "<source>\0<delivery>" → job id

    def offer(self, source: str, targets: WebhookTargets, delivery: str) -> tuple[str, str]:
        """(job id, "queued" | "merged" | "duplicate")."""
        key = f"{source}\0{delivery}"
        with self.lock:
            if delivery:
                seen = self.recent.get(key) or delivery_seen(self.services.catalog, source, delivery)
                if seen:
                    return seen, "duplicate"
            pending = self.pending.get(source)
            if pending is not None:
                pending.targets = pending.targets.merge(targets)
                pending.deliveries += [delivery] if delivery else []
                outcome = "merged"
            else:
                params = targets.as_json() | {"deliveries": [delivery] if delivery else []}
                job_id = self.services.catalog.create_job(None, source, WEBHOOK_JOB, params=params)
                pending = self.pending[source] = _Pending(job_id, targets, [delivery] if delivery else [])
                self.run(lambda: self._start(source))
                outcome = "queued"
            if delivery:
                self.recent[key] = pending.job_id
                while len(self.recent) > RECENT_DELIVERIES:
                    self.recent.popitem(last=False)
            return pending.job_id, outcome

    def resume(self) -> list[str]:
        """Run again the webhook jobs an earlier process queued or left running (it stopped or was killed)."""
        left = self.services.catalog.list_jobs(kind=WEBHOOK_JOB, state=("queued", "running", "interrupted"),
                                               limit=1000)
        with self.lock:
            for job in reversed(left):  # oldest first
                params = job.params or {}
                targets = WebhookTargets(tuple(params.get("doc_ids") or ()), bool(params.get("sync")),
                                         bool(params.get("access_pass")))
                deliveries = list(params.get("deliveries") or [])
                pending = self.pending.get(job.source)
                if pending is not None:  # two left for one source: one job does both
                    pending.targets = pending.targets.merge(targets)
                    pending.deliveries += deliveries
                    self.services.catalog.update_job(job.id, state="cancelled", error=f"merged into job {pending.job_id}")
                    continue
                self.pending[job.source] = _Pending(job.id, targets, deliveries)
                self.run(functools.partial(self._start, job.source))
        return [job.id for job in left]

    def _start(self, source: str) -> None:
        with self.lock:
            pending = self.pending.pop(source)
        try:
            run_webhook_job(self.services, source, pending.job_id, pending.targets, pending.deliveries,
                            request_sync=self.request_sync)
        except Exception:  # noqa: BLE001 - recorded on the job; the writer thread must survive
            log.warning("webhook job %s for source %s failed", pending.job_id, source)


def _queue(request: Request) -> WebhookQueue:
    """The app's queue, made on first use (on the event loop's thread, so made once)."""
    state = request.app.state
    if getattr(state, "webhooks", None) is None:
        distributed = bool(state.settings.celery_broker_url)
        state.webhooks = WebhookQueue(state.services, state.jobs.submit_call,
                                      request_sync=state.jobs.submit if distributed else None)
        state.webhooks.resume()
    return state.webhooks


# -- routes -----------------------------------------------------------------------------------------

EVENT_BODY = {"requestBody": {"required": True, "description": "the product's event, as it sends it",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.post("/webhooks/{source}", status_code=202, responses={401: {}, 400: {}}, openapi_extra=EVENT_BODY)
async def receive(source: str, request: Request) -> JSONResponse:
    """A GitLab, Jira or Confluence event for `source`, checked against the source's webhook secret;
    its items are read again by a queued `webhook` job (events arriving meanwhile join it)."""
    body = await request.body()
    queue = _queue(request)
    catalog = request.app.state.services.catalog
    row = await run_in_threadpool(catalog.get_source, source)
    kind = row.kind if row else ""
    stored = (row.config or {}).get(SECRET_KEY) if row else None
    if not verified_secret(kind, stored, request.headers, request.query_params, body):
        return JSONResponse(REFUSED, status_code=401)
    try:
        targets = parse_event(kind, source, json.loads(body))
    except (ValueError, RecursionError) as exc:  # WebhookPayloadError and JSON errors are ValueErrors
        why = str(exc) if isinstance(exc, WebhookPayloadError) else "the body is not JSON"
        raise BadRequest(f"not a {kind} event: {why}") from None
    if targets is None:
        return JSONResponse({"status": "ignored"}, status_code=202)
    job_id, outcome = await run_in_threadpool(queue.offer, source, targets, delivery_id(kind, request.headers))
    log.info("webhook %s: %s into job %s (%d documents)", source, outcome, job_id, len(targets.doc_ids))
    return JSONResponse({"status": outcome, "job_id": job_id}, status_code=202)


class WebhookIn(BaseModel):
    rotate: bool = False


class WebhookOut(BaseModel):
    source: str
    kind: str
    url: str
    secret: str | None  # shown this once; null when the source already had one (rotate for a new one)
    created: bool


def public_base(settings: Settings, fallback: str) -> str:
    return settings.public_url or fallback


@router.post("/sources/{name:path}/webhook", response_model=WebhookOut)
def source_webhook(name: str, request: Request, body: WebhookIn | None = None,
                   who: Principal = Depends(admin)) -> WebhookOut:
    """The URL to configure in the product and, when new or rotated, the secret (shown once, kept hashed)."""
    body = body or WebhookIn()
    row, secret = make_secret(request.app.state.services.catalog, name, body.rotate)
    if secret is not None:
        request.app.state.audit.record(who, "sources.webhook", target=name)
    base = public_base(request.app.state.settings, str(request.base_url))
    return WebhookOut(source=name, kind=row.kind, url=webhook_url(base, name, row.kind, secret), secret=secret,
                      created=secret is not None)
