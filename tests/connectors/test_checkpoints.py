"""Sync bookkeeping of ticket/page sources: cursors, resets, retries, reconciliation timing, mid-sync checkpoints."""
from __future__ import annotations

from datetime import timedelta

import pytest

from connectors.checkpoints import SyncState, changed_part, item_version, parse_time, stamp

PREVIOUS = {"scopes": {"A": {"ident": "proj-a", "access": "d1", "cursor": "2024-03-01T10:00:00.000Z"},
                       "B": {"ident": "proj-b", "access": "d2", "cursor": "2024-03-01T11:00:00.000Z"}},
            "retry": {"src:A-9": {"scope": "A"}}, "reconciled_at": 1000.0}


@pytest.mark.parametrize("value, expected", [
    ("2024-03-01T10:15:30.123Z", "2024-03-01T10:15:30.123Z"),
    ("2024-03-01T11:15:30.000+0100", "2024-03-01T10:15:30.000Z"),
    ("2024-03-01T11:15:30+01:00", "2024-03-01T10:15:30.000Z"),
    ("2024-03-01T10:15:30", "2024-03-01T10:15:30.000Z"),
])
def test_source_timestamps_normalise_to_utc(value, expected):
    assert stamp(parse_time(value)) == expected


def test_unreadable_timestamps_are_none():
    assert parse_time("") is None and parse_time("yesterday") is None


def test_versions_carry_the_access_digest():
    assert changed_part(item_version("2024-03-01T10:00:00Z", "abc")) == "2024-03-01T10:00:00Z"
    assert item_version("t", "a") != item_version("t", "b")


def test_cursor_survives_unless_identity_or_access_changed():
    state = SyncState(known={}, previous=PREVIOUS)
    assert state.open_scope("A", "proj-a", "d1").cursor == "2024-03-01T10:00:00.000Z"
    assert state.open_scope("B", "proj-b", "CHANGED").cursor is None
    assert state.since("A", timedelta(minutes=5)).isoformat() == "2024-03-01T09:55:00+00:00"
    assert state.since("B", timedelta(minutes=5)) is None


def test_cursor_only_moves_forward():
    state = SyncState(known={}, previous=PREVIOUS)
    state.open_scope("A", "proj-a", "d1")
    state.advance("A", "2024-03-01T12:00:00.000+0100")  # 11:00 UTC
    state.advance("A", "2024-03-01T10:30:00.000Z")
    assert state.scopes["A"].cursor == "2024-03-01T11:00:00.000Z"


def test_mid_sync_checkpoint_keeps_scopes_not_reached_yet():
    state = SyncState(known={}, previous=PREVIOUS)
    state.open_scope("A", "proj-a", "d1")
    state.advance("A", "2024-03-01T10:30:00.000Z")
    partial = state.checkpoint()
    assert partial["scopes"]["B"] == PREVIOUS["scopes"]["B"]
    assert partial["scopes"]["A"]["cursor"] == "2024-03-01T10:30:00.000Z"
    state.finished = True
    assert set(state.checkpoint()["scopes"]) == {"A"}  # a finished sync forgets scopes that are gone


def test_items_are_read_once_per_sync_and_failures_are_retried():
    state = SyncState(known={"src:A-1": "v1", "src:A-9": "v1"}, previous=PREVIOUS)
    assert state.unchanged("src:A-1", "v1") and not state.unchanged("src:A-2", "v1")
    assert not state.unchanged("src:A-9", "v1")  # waiting for a retry: read even though the version matches
    state.failed("src:A-2", {"scope": "A"})
    assert state.unchanged("src:A-2", "v2")  # not read twice in one sync
    state.succeeded("src:A-9")
    assert state.checkpoint()["retry"] == {"src:A-2": {"scope": "A"}}
    assert state.seen == {"src:A-1", "src:A-2", "src:A-9"}


def test_reconciliation_is_due_by_the_clock():
    now = [1000.0 + 100]
    state = SyncState(known={}, previous=PREVIOUS, reconcile_every=3600, clock=lambda: now[0])
    assert not state.reconcile_due()
    now[0] = 1000.0 + 3600
    assert state.reconcile_due()
    assert SyncState(known={}).reconcile_due()  # never reconciled


def test_complete_listing_needs_every_scope_listed_without_failure():
    state = SyncState(known={})
    state.open_scope("A", "a", "d").complete = True
    assert state.complete_listing()
    state.open_scope("B", "b", "d")
    assert not state.complete_listing()
    state.scopes["B"].complete = True
    state.scope_failed("B")
    assert not state.complete_listing()
