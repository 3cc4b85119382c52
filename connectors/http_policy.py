"""One HTTP policy for every connector: timeouts, retries with backoff and jitter, Retry-After, a rate limit."""
from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Failures of the transfer itself, retried like a dropped connection: no answer, or an answer cut short
# (a truncated chunked body or one shorter than its Content-Length: ChunkedEncodingError; a body that
# does not decode: ContentDecodingError).
TRANSFER_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                   requests.exceptions.ContentDecodingError)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
# Libraries whose DEBUG output carries request headers (Authorization) or response bodies.
NOISY_LOGGERS = ("atlassian", "urllib3.connectionpool")


class RetriesExhausted(requests.exceptions.RetryError):
    """A request still failed transiently after every allowed attempt."""


@dataclass(frozen=True)
class HttpPolicy:
    """How a connector talks HTTP. Every request has a timeout; transient failures are retried."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 6
    backoff_base: float = 0.5  # seconds before the first retry, doubled per attempt (full jitter)
    backoff_cap: float = 60.0
    max_retry_after: float = 300.0  # a longer Retry-After is clamped to this
    requests_per_second: float = 0.0  # 0 = unlimited

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): full jitter."""
        return rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header: delta seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class RateLimiter:
    """At most `rate` requests per second, spaced evenly; shared by every thread of one session."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


def _where(url: str) -> str:
    """Scheme, host and path of a URL: no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


class PolicySession(requests.Session):
    """A requests.Session applying an HttpPolicy to every request; hand it to python-gitlab or
    atlassian-python-api. After the last attempt a retryable status raises RetriesExhausted, so a
    client's own retry loop cannot multiply ours."""

    def __init__(self, policy: HttpPolicy, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.limiter = RateLimiter(policy.requests_per_second, sleep=sleep)
        self.retries = 0  # transient failures retried over the session's life (for job counts)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.policy.timeout
        verb = method.upper()
        attempt = 0
        while True:
            attempt += 1
            self.limiter.wait()
            try:
                response = super().request(method, url, *args, **kwargs)
            except TRANSFER_ERRORS as exc:
                if verb not in IDEMPOTENT or attempt >= self.policy.max_attempts:
                    raise
                delay = self.policy.backoff(attempt, self.rng)
                self._note(verb, url, type(exc).__name__, attempt, delay)
                self.sleep(delay)
                continue
            if response.status_code not in RETRY_STATUSES or (response.status_code != 429 and verb not in IDEMPOTENT):
                return response
            if attempt >= self.policy.max_attempts:
                response.close()
                raise RetriesExhausted(f"{verb} {_where(url)} answered {response.status_code} "
                                       f"after {attempt} attempts", response=response)
            delay = self._delay(response, attempt)
            self._note(verb, url, str(response.status_code), attempt, delay)
            response.close()
            self.sleep(delay)

    def _delay(self, response: requests.Response, attempt: int) -> float:
        asked = retry_after_seconds(response.headers.get("Retry-After"))
        if asked is not None:
            return min(asked, self.policy.max_retry_after)
        return self.policy.backoff(attempt, self.rng)

    def _note(self, verb: str, url: str, why: str, attempt: int, delay: float) -> None:
        self.retries += 1
        log.info("%s %s: %s on attempt %d, retrying in %.2fs", verb, _where(url), why, attempt, delay)


def quiet_client_loggers() -> None:
    """Client libraries log request headers and response bodies at DEBUG; never let those through."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
