"""`celery -A faulty_worker worker`: the real Cairn worker app whose chunker misbehaves on purpose.

Stands for the real ways a document poisons a worker: the chunker raises on a document containing
POISON_RAISE, and kills its process (as a native crash would) on one containing POISON_KILL.
`CAIRN_TEST_CHUNK_DELAY` (seconds per document) makes a worker slow, so a test can kill it while
a batch is in flight; `CAIRN_TEST_CRAWL_DELAY` (seconds per batch sent) makes a crawl slow, so a test can
kill it part-way."""
from __future__ import annotations

import os
import signal
import time

from workers import batches, distributed
from workers.celery_app import app  # noqa: F401  (what `celery -A faulty_worker` loads)
from workers.tasks import embed_documents  # noqa: F401  (registers the tasks)

_real_chunker = batches.chunk_document


def misbehaving_chunker(doc, **options):
    if "POISON_RAISE" in doc.content:
        raise ValueError(f"cannot parse {doc.path}")
    if "POISON_KILL" in doc.content:
        os.kill(os.getpid(), signal.SIGKILL)
    delay = float(os.environ.get("CAIRN_TEST_CHUNK_DELAY", "0") or 0)
    if delay:
        time.sleep(delay)
    return _real_chunker(doc, **options)


_real_submit = distributed.QueueSink.submit


def slow_submit(self, docs, landed):
    _real_submit(self, docs, landed)
    delay = float(os.environ.get("CAIRN_TEST_CRAWL_DELAY", "0") or 0)
    if delay:
        time.sleep(delay)


batches.chunk_document = misbehaving_chunker
distributed.QueueSink.submit = slow_submit
