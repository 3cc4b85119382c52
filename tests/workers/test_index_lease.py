"""The index owner's lease (workers/index_owner.py) on a real catalog: one holder at a time, renewal,
takeover only after expiry and only by a node holding the same copy of the index, a clean release."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import update

from indexer.catalog import Catalog
from indexer.catalog.db import make_engine
from indexer.catalog.schema import index_leases
from indexer.settings import Settings
from workers.celery_app import WorkerRuntime
from workers.index_owner import IndexLease, LeaseKeeper, NotIndexOwner, index_id, node_url


@pytest.fixture
def engine(tmp_path):
    catalog = Catalog(make_engine(f"sqlite:///{tmp_path / 'catalog.db'}"))
    catalog.create_all()
    return catalog.engine


def lease(engine, node: str, seconds: int = 30) -> IndexLease:
    return IndexLease(engine, node, f"http://{node}", seconds)


def expire(engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(index_leases).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))


def test_one_holder_at_a_time_and_takeover_only_after_expiry(engine):
    a, b = lease(engine, "a"), lease(engine, "b")
    assert a.try_take("copy-1")
    assert not b.try_take("copy-1")  # live: b is a replica
    assert a.try_take("copy-1") and a.renew()  # the holder may take it again (a restart of its loop)
    expire(engine)
    assert not a.current().live()
    assert b.try_take("copy-1")
    assert not a.renew()  # the old owner learns it lost the lease
    current = b.current()
    assert current.holder == "b" and current.url == "http://b" and current.live()


def test_a_node_with_another_copy_of_the_index_never_takes_over(engine):
    a, b = lease(engine, "a"), lease(engine, "b")
    assert a.try_take("copy-1")
    expire(engine)
    assert not b.try_take("copy-2")  # a private data dir: it would serve an index missing the owner's work
    assert not b.try_take("")
    assert b.current().holder == "a"


def test_a_clean_release_lets_another_node_take_over_at_once(engine):
    a, b = lease(engine, "a"), lease(engine, "b")
    assert a.try_take("copy-1")
    keeper = LeaseKeeper(a, lost=lambda: None).start()
    keeper.stop(release=True)
    assert b.try_take("copy-1")


def test_the_keeper_renews_and_reports_a_lost_lease(engine):
    a = lease(engine, "a", seconds=3)
    assert a.try_take("copy-1")
    lost: list[bool] = []
    keeper = LeaseKeeper(a, lost=lambda: lost.append(True)).start()
    first = a.current().expires_at
    time.sleep(1.5)
    assert a.current().expires_at > first and not lost  # renewed every third of the lease
    with engine.begin() as conn:
        conn.execute(update(index_leases).values(holder="b"))  # another node took it
    deadline = time.monotonic() + 5
    while not lost and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lost == [True]
    keeper.stop(release=False)


def test_the_index_id_names_a_copy_of_the_index_in_its_data_dir(tmp_path):
    assert index_id(tmp_path, create=False) == ""
    made = index_id(tmp_path, create=True)
    assert made and index_id(tmp_path, create=False) == made == (tmp_path / "index-id").read_text().strip()


def test_node_url(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert node_url(settings, "127.0.0.1", 8001) == "http://127.0.0.1:8001"
    assert not node_url(settings, "0.0.0.0", 8001).startswith("http://0.0.0.0")
    assert node_url(settings.model_copy(update={"node_url": "http://api-0.cairn:8000/"}), "0.0.0.0", 1) \
        == "http://api-0.cairn:8000"


def test_a_worker_never_opens_its_own_copy_of_an_index_the_owner_holds(tmp_path):
    runtime = WorkerRuntime(settings=Settings(data_dir=tmp_path, celery_broker_url="redis://127.0.0.1:6379/15"))
    assert runtime.owner_elsewhere()
    with pytest.raises(NotIndexOwner, match="only the index owner"):
        runtime.index_services()
    assert not (tmp_path / "generations").exists()
