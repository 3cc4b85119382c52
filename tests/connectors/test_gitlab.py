"""The GitLab connector through python-gitlab against a fake GitLab (REST v4 + git smart HTTP), end to end."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from urllib.parse import quote

import pytest
from fake_gitlab import user_id
from fastapi.testclient import TestClient
from harness import consistent, found_docs, indexed, interrupted_sync, register, resolve_links, same_documents, sync

from api.app import create_app
from api.tokens import TokenStore
from connectors.base import AuthFailed
from connectors.registry import build_connector
from indexer.models import AccessChange, Deletion, Document, Principal

CHECKOUT = '''"""Checkout of a cart."""


def checkout_with_deadline(cart, gateway, seconds=30):
    """Charge the cart; the payment gateway call times out after `seconds`."""
    return gateway.charge(cart.total, timeout=seconds)
'''
OWNER, DEVELOPER, REPORTER, GUEST = 50, 30, 20, 10


@pytest.fixture
def gitlab(gitlab_server, make_repo, monkeypatch):
    """A group with a public project (code + issues + an MR), plus internal and private projects."""
    fake = gitlab_server
    monkeypatch.setenv("FAKE_GITLAB_TOKEN", fake.token)
    repo = make_repo("checkout")
    repo.write("cart/checkout.py", CHECKOUT)
    repo.commit("initial")
    fake.add_group("platform")
    fake.add_group("platform/sre", members={"sam": DEVELOPER, "gwen": GUEST})
    fake.repo = repo
    fake.public = fake.add_project("platform/checkout", "public", repo=repo.root,
                                   members={"alice": OWNER, "gus": GUEST})
    fake.internal = fake.add_project("platform/payments", "internal", members={"ivan": DEVELOPER})
    fake.private = fake.add_project("platform/vault", "private", repo=None, members={"pat": REPORTER, "gil": GUEST},
                                    shares={"platform/sre": DEVELOPER})
    fake.add_item(fake.public, "issues", "Checkout times out on big carts",
                  "Carts with 200 items hit the gateway timeout.\n\n## Logs\n\n```\nTimeoutError after 30s\n```",
                  labels=["bug", "checkout"], assignees=["bob"], milestone={"id": 1, "title": "v2.3"})
    fake.add_note(fake.public, "issues", 1, "Reproduced: gateway answers in 31s, ünïcødé ✓")
    fake.add_item(fake.public, "issues", "Refund flow crashes", "NullPointer in refunds")
    fake.add_item(fake.public, "merge_requests", "Raise the checkout deadline", "Raises the timeout to 60s")
    fake.add_item(fake.internal, "issues", "Payments ledger drift", "ledger totals drift nightly")
    fake.add_item(fake.private, "issues", "Vault rotation schedule", "rotate the vault keys monthly")
    return fake


def person(user: str, groups: frozenset[str] = frozenset()) -> Principal:
    """A caller as the identity layer resolves one: linked to their GitLab account (by numeric id)."""
    return Principal(user, groups, linked=frozenset({f"gitlab:user:{user_id(user)}"}))


def gitlab_source(fake, **extra):
    return {"name": "gl", "kind": "gitlab", "url": fake.server.url, "group": "platform",
            "token_env": "FAKE_GITLAB_TOKEN", "internal_principal": "group:org-all", **extra}


def test_full_sync_indexes_code_issues_and_merge_requests_with_links(services, gitlab):
    register(services, gitlab_source(gitlab))
    counts = sync(services, "gl")
    docs = indexed(services, "gl")
    assert set(docs) == {"gl:platform/checkout/cart/checkout.py", "gl:platform/checkout/-/issues/1",
                         "gl:platform/checkout/-/issues/2", "gl:platform/checkout/-/merge_requests/1",
                         "gl:platform/payments/-/issues/1", "gl:platform/vault/-/issues/1"}
    assert counts.files_failed == 0 and consistent(services, "gl")
    issue = services.catalog.get_document("gl:platform/checkout/-/issues/1")
    assert issue.url == f"{gitlab.server.url}/platform/checkout/-/issues/1" and issue.kind == "issue"
    for fact in ("labels: bug, checkout", "milestone: v2.3", "assignees: @bob", "author: @alice", "state: opened",
                 "ünïcødé ✓", "TimeoutError after 30s"):
        assert fact in issue.content
    code = services.catalog.get_document("gl:platform/checkout/cart/checkout.py")
    assert code.url.startswith(f"{gitlab.server.url}/platform/checkout/-/blob/") and code.language == "python"
    assert services.catalog.get_document("gl:platform/checkout/-/merge_requests/1").kind == "merge_request"
    # The group listing and every item listing followed GitLab's pagination.
    assert all(s.params.get("per_page") == "100" for s in gitlab.server.requests(r"/issues$"))


def test_incremental_sync_reads_only_what_changed(services, gitlab):
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    gitlab.server.clear_log()
    gitlab.add_note(gitlab.public, "issues", 2, "Fixed by restarting the refund worker")
    counts = sync(services, "gl")
    assert counts.files_changed == 1 and counts.files_deleted == 0
    # Scopes that had items are listed from their cursor (empty ones have none and list nothing anyway).
    listings = gitlab.server.requests(rf"/projects/({gitlab.public.id}|{gitlab.internal.id})/issues$")
    assert len(listings) == 2 and all("updated_after" in s.params for s in listings)
    notes = [s.path for s in gitlab.server.requests(r"/notes$")]
    assert notes == [f"/api/v4/projects/{gitlab.public.id}/issues/2/notes"]
    assert "refund worker" in services.catalog.get_document("gl:platform/checkout/-/issues/2").content
    again = sync(services, "gl")
    assert (again.files_changed, again.chunks_embedded) == (0, 0)


def test_deleted_items_and_projects_are_pruned(services, gitlab):
    register(services, gitlab_source(gitlab, reconcile_minutes=0))
    sync(services, "gl")
    gitlab.delete_item(gitlab.public, "issues", 2)
    gitlab.delete_item(gitlab.public, "merge_requests", 1)
    del gitlab.projects[gitlab.private.id]  # the project left the group (deleted or moved away)
    gitlab.repo.remove("cart/checkout.py")
    gitlab.repo.write("cart/pay.py", "def pay():\n    return 'paid'\n")
    gitlab.repo.commit("move")
    counts = sync(services, "gl")
    assert set(indexed(services, "gl")) == {"gl:platform/checkout/cart/pay.py", "gl:platform/checkout/-/issues/1",
                                            "gl:platform/payments/-/issues/1"}
    assert counts.files_deleted == 4 and consistent(services, "gl")


def test_renamed_project_moves_its_documents(services, gitlab):
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    gitlab.internal.path = "platform/billing"
    sync(services, "gl")
    assert "gl:platform/billing/-/issues/1" in indexed(services, "gl")
    assert "gl:platform/payments/-/issues/1" not in indexed(services, "gl")


def test_rate_limits_server_errors_and_slow_answers_lose_and_duplicate_nothing(services, gitlab):
    register(services, gitlab_source(gitlab))
    gitlab.server.fail(r"/groups/.*/projects$", 429, retry_after="0")
    gitlab.server.fail(r"/issues$", 429, times=2, retry_after="0")
    gitlab.server.fail(r"/notes$", 500, times=2)
    gitlab.server.fail(r"/members/all$", 0, delay=1.5)  # longer than the 1s read timeout
    gitlab.server.fail(r"/merge_requests$", 502)
    counts = sync(services, "gl")
    assert counts.files_failed == 0 and len(indexed(services, "gl")) == 6
    assert consistent(services, "gl") and services.catalog.list_failures("gl") == []
    assert not any(f.times for f in gitlab.server.faults)  # every fault was met and survived


def test_a_failing_item_is_recorded_retried_and_cleared(services, gitlab):
    register(services, gitlab_source(gitlab))
    gitlab.server.fail(rf"/projects/{gitlab.public.id}/issues/1/notes$", 500, times=5)  # all attempts fail
    first = sync(services, "gl")
    assert first.files_failed == 1
    assert [f.item for f in services.catalog.list_failures("gl")] == ["platform/checkout/-/issues/1"]
    assert "gl:platform/checkout/-/issues/1" not in indexed(services, "gl")
    assert len(indexed(services, "gl")) == 5  # the rest of the sync went on
    gitlab.server.clear_log()
    second = sync(services, "gl")
    assert second.files_failed == 0 and "gl:platform/checkout/-/issues/1" in indexed(services, "gl")
    assert services.catalog.list_failures("gl") == []


def test_resumes_after_being_killed_mid_sync(services, gitlab):
    for n in range(3, 10):
        gitlab.add_item(gitlab.internal, "issues", f"Ledger issue {n}", f"ledger problem number {n}")
    register(services, gitlab_source(gitlab, name="clean", code=False))
    sync(services, "clean")
    register(services, gitlab_source(gitlab, code=False))
    interrupted_sync(services, "gl", after=6)
    checkpoint = services.catalog.get_checkpoint("gl")
    assert checkpoint and any(s["cursor"] for s in checkpoint["scopes"].values())  # stored mid-sync
    gitlab.server.clear_log()
    sync(services, "gl")
    assert same_documents(indexed(services, "gl")) == same_documents(indexed(services, "clean"))
    for doc_id in indexed(services, "gl"):
        clean = services.catalog.get_document("clean:" + doc_id.split(":", 1)[1])
        assert services.catalog.get_document(doc_id).content == clean.content
    assert consistent(services, "gl")
    # It resumed from the stored cursor rather than reading everything again.
    assert gitlab.server.requests(rf"/projects/{gitlab.public.id}/issues$")[0].params.get("updated_after")
    assert len(gitlab.server.requests(r"/notes$")) < 11


def test_access_public_internal_private_confidential_and_feature_levels(services, gitlab):
    gitlab.add_item(gitlab.public, "issues", "Confidential checkout breach", "card numbers leaked in checkout logs",
                    confidential=True, author="carla", assignees=["dina"])
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    query = "checkout ledger vault rotation breach refund"
    stranger = found_docs(services, query, person("stranger"))
    assert stranger and all(d.startswith("gl:platform/checkout/") for d in stranger)
    assert "gl:platform/checkout/-/issues/3" not in stranger  # confidential is never public
    org_user = found_docs(services, query, person("olga", frozenset({"org-all"})))
    assert "gl:platform/payments/-/issues/1" in org_user and not any("vault" in d for d in org_user)
    assert "gl:platform/vault/-/issues/1" in found_docs(services, query, person("gil"))  # guests read issues
    # The project is shared with platform/sre: its members read as their role there, capped by the share.
    assert "gl:platform/vault/-/issues/1" in found_docs(services, query, person("sam"))
    assert "gl:platform/vault/-/issues/1" in found_docs(services, query, person("gwen"))
    # A group name alone grants nothing: GitLab's roles differ member by member inside the group.
    assert not found_docs(services, query, person("x", frozenset({"platform/sre"}))) - stranger
    for reader in ("alice", "carla", "dina"):  # reporter+ member, author, assignee
        assert "gl:platform/checkout/-/issues/3" in found_docs(services, query, person(reader))
    assert "gl:platform/checkout/-/issues/3" not in found_docs(services, query, person("gus"))  # a guest


def test_permission_changes_are_applied_on_the_next_sync(services, gitlab):
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    assert "gl:platform/vault/-/issues/1" in found_docs(services, "vault rotation", person("pat"))
    del gitlab.private.members["pat"]
    gitlab.public.visibility = "private"
    gitlab.public.levels["issues"] = "private"
    counts = sync(services, "gl")
    assert counts.files_changed == 5  # every document of both projects, under its new access
    assert "gl:platform/vault/-/issues/1" not in found_docs(services, "vault rotation", person("pat"))
    assert not found_docs(services, "checkout deadline gateway", person("stranger"))
    assert "gl:platform/checkout/cart/checkout.py" in found_docs(services, "checkout deadline gateway",
                                                                 person("alice"))


def test_internal_without_an_org_principal_is_members_only(services, gitlab):
    register(services, gitlab_source(gitlab, internal_principal=""))
    sync(services, "gl")
    assert "gl:platform/payments/-/issues/1" not in found_docs(services, "ledger drift", person("olga",
                                                                                              frozenset({"org-all"})))
    assert "gl:platform/payments/-/issues/1" in found_docs(services, "ledger drift", person("ivan"))


def test_the_token_is_never_stored_logged_or_left_on_disk(services, gitlab, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    register(services, gitlab_source(gitlab))
    gitlab.server.fail(r"/platform/checkout\.git/", 500, times=20, method="POST")  # the clone fails
    counts = sync(services, "gl")
    assert counts.files_failed == 1
    sync(services, "gl")  # and a later clone succeeds
    token = gitlab.token
    row = services.catalog.get_source("gl")
    failures = services.catalog.list_failures("gl")
    stored = [str(row.config), str(row.checkpoint), *(f.error for f in failures),
              *(j.error for j in services.catalog.list_jobs(source="gl"))]
    assert failures and not any(token in text for text in stored)
    assert token not in caplog.text and "oauth2:" not in caplog.text
    for path in Path(services.settings.data_dir).rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert token.encode() not in path.read_bytes(), path


def test_refused_token_fails_the_job_and_keeps_the_index(services, gitlab, monkeypatch):
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    monkeypatch.setenv("FAKE_GITLAB_TOKEN", "glpat-wrong-value")
    with pytest.raises(AuthFailed):
        sync(services, "gl")
    assert len(indexed(services, "gl")) == 6 and services.catalog.get_source("gl").state == "error"
    assert "glpat-wrong-value" not in services.catalog.get_source("gl").last_error


def test_a_full_reindex_rewrites_everything_and_prunes_through_list_ids(services, gitlab):
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    gitlab.delete_item(gitlab.public, "issues", 2)
    counts = sync(services, "gl", full=True)
    assert counts.files_changed == 5 and counts.files_deleted == 1 and consistent(services, "gl")
    assert "gl:platform/checkout/-/issues/2" not in indexed(services, "gl")


def test_huge_descriptions_are_capped_not_dropped(services, gitlab):
    huge = "\n\n".join(f"Stack frame {n}: checkout.charge() → gateway.post() timed out ✓ " * 30 for n in range(120))
    gitlab.add_item(gitlab.internal, "issues", "Huge trace", huge)
    register(services, gitlab_source(gitlab, max_document_chars=40_000, code=False))
    assert sync(services, "gl").files_failed == 0
    doc = services.catalog.get_document("gl:platform/payments/-/issues/2")
    assert 35_000 < len(doc.content) <= 40_000 + 20 and doc.content.endswith("(truncated)\n")


def test_template_comments_hidden_by_gitlab_stay_out_of_the_index(services, gitlab):
    """GitLab does not show `<!-- -->` comments of a description or a note; the index holds what readers see
    (a comment inside a code block is code and stays)."""
    description = ("<!-- Template: read CONTRIBUTING.md before filing. -->\n## Summary\nRefunds time out.\n"
                   "```html\n<!-- kept: pasted markup -->\n```\n<!-- Steps to reproduce: -->")
    gitlab.add_item(gitlab.internal, "issues", "Refund timeout", description)
    gitlab.add_note(gitlab.internal, "issues", 2, "<!-- reply template -->Seen on staging too.")
    gitlab.add_note(gitlab.internal, "issues", 2, "<!-- only a comment -->")
    register(services, gitlab_source(gitlab, code=False))
    assert sync(services, "gl").files_failed == 0
    doc = services.catalog.get_document("gl:platform/payments/-/issues/2").content
    assert "Refunds time out." in doc and "Seen on staging too." in doc and "<!-- kept: pasted markup -->" in doc
    assert "CONTRIBUTING" not in doc and "Steps to reproduce" not in doc and "template" not in doc
    assert "only a comment" not in doc


def test_every_page_of_every_listing_is_read(services, gitlab):
    gitlab.max_per_page = 4
    for n in range(9):
        gitlab.add_item(gitlab.internal, "merge_requests", f"Bump dependency {n}", f"bump number {n}")
        gitlab.add_note(gitlab.public, "issues", 1, f"note number {n}")
    register(services, gitlab_source(gitlab, code=False))
    assert sync(services, "gl").files_failed == 0
    assert sum(1 for d in indexed(services, "gl") if "/-/merge_requests/" in d) == 10
    assert "note number 8" in services.catalog.get_document("gl:platform/checkout/-/issues/1").content
    pages = [s.params.get("page") for s in gitlab.server.requests(rf"/projects/{gitlab.internal.id}/merge_requests$")]
    assert pages == [None, "2", "3"]  # followed the Link header


def test_a_listed_project_that_is_not_found_is_reported_and_keeps_its_documents(services, gitlab):
    register(services, gitlab_source(gitlab, group="", projects=["platform/checkout", "platform/vault"],
                                     reconcile_minutes=0))
    sync(services, "gl")
    before = indexed(services, "gl")
    vault = gitlab.projects.pop(gitlab.private.id)  # e.g. the token lost access for a while
    counts = sync(services, "gl")
    assert counts.files_failed == 1 and counts.files_deleted == 0 and indexed(services, "gl") == before
    assert [f.item for f in services.catalog.list_failures("gl")] == ["platform/vault/"]
    gitlab.projects[vault.id] = vault
    gitlab.add_item(vault, "issues", "Vault audit", "audit the vault")
    sync(services, "gl")
    assert "gl:platform/vault/-/issues/2" in indexed(services, "gl")


def test_a_project_level_failure_is_cleared_once_the_project_syncs_again(services, gitlab):
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    gitlab.server.fail(rf"/projects/{gitlab.internal.id}/members/all$", 500, times=5)
    assert sync(services, "gl").files_failed == 1
    assert [f.item for f in services.catalog.list_failures("gl")] == ["platform/payments/"]
    assert "gl:platform/payments/-/issues/1" in indexed(services, "gl")  # kept while it could not be read
    sync(services, "gl")
    assert services.catalog.list_failures("gl") == []


# -- internal notes, exact ACLs, the permissions pass and refresh ---------------------------------------------

NOTE = "gl:platform/checkout/-/issues/1#note-2"
SECRET = "rotate the gateway signing key before friday"


def seed_notes(fake):
    """An internal note on the public issue, one on a confidential issue, one on the private vault issue."""
    fake.public.members["rita"] = REPORTER
    fake.add_note(fake.public, "issues", 1, f"Internal: {SECRET}", author="alice", internal=True)
    fake.add_note(fake.public, "issues", 1, "Public follow-up: the fix ships in v2.3")
    fake.add_item(fake.public, "issues", "Confidential card leak", "card numbers in the checkout logs",
                  confidential=True, author="carla", assignees=["gus"])
    fake.add_note(fake.public, "issues", 3, "Internal: the leak came from the fraud export", author="alice",
                  internal=True)
    fake.add_note(fake.private, "issues", 1, "Internal: vault master key escrow in locker 7", author="pat",
                  internal=True)


def connector_of(services, name="gl"):
    return build_connector(services.catalog.get_source(name), services.settings)


def permissions_pass(services, name="gl"):
    """One permissions pass, applied as the engine does: ACL rewrites from the catalog's text, deletions."""
    items = list(connector_of(services, name).access_pass(services.catalog.access_digests(name)))
    changes = {i.doc_id: i.access for i in items if isinstance(i, AccessChange)}
    counts = services.pipeline.reapply_access(changes)
    services.pipeline.delete([i.doc_id for i in items if isinstance(i, Deletion)])
    return items, counts


def refreshed(services, doc_ids, name="gl"):
    """Items read again now (a webhook), applied to the index."""
    items = list(connector_of(services, name).refresh(doc_ids))
    services.pipeline.apply_lexical([i for i in items if isinstance(i, Document)])
    services.pipeline.embed_pending(name)
    services.pipeline.delete([i.doc_id for i in items if isinstance(i, Deletion)])
    return items


def reads(services, doc_id, principal):
    return doc_id in found_docs(services, "gateway signing key leak fraud export vault escrow locker checkout",
                                principal)


def test_internal_notes_are_documents_of_their_own_for_reporters_only(services, gitlab):
    seed_notes(gitlab)
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    docs = indexed(services, "gl")
    assert {NOTE, "gl:platform/checkout/-/issues/3#note-1", "gl:platform/vault/-/issues/1#note-1"} <= set(docs)
    ticket = services.catalog.get_document("gl:platform/checkout/-/issues/1")
    assert SECRET not in ticket.content and "the fix ships in v2.3" in ticket.content
    note = services.catalog.get_document(NOTE)
    assert SECRET in note.content and note.path == "platform/checkout/-/issues/1#note-2" and note.kind == "issue"
    assert note.url.endswith("/platform/checkout/-/issues/1#note_2")
    # A public issue: everybody reads the ticket, only Reporter+ members its internal note.
    for who in ("alice", "rita"):
        assert reads(services, NOTE, person(who))
    for who in (person("gus"), person("stranger"), person("olga", frozenset({"org-all"}))):
        assert not reads(services, NOTE, who) and reads(services, "gl:platform/checkout/-/issues/1", who)
    # A confidential issue: its assignee (a guest) reads the issue, never its internal note.
    assert reads(services, "gl:platform/checkout/-/issues/3", person("gus"))
    assert not reads(services, "gl:platform/checkout/-/issues/3#note-1", person("gus"))
    assert not reads(services, "gl:platform/checkout/-/issues/3#note-1", person("carla"))  # the author
    assert reads(services, "gl:platform/checkout/-/issues/3#note-1", person("rita"))
    # A private project: pat (Reporter) reads the note, gil (Guest) the issue only, sam (shared, Developer) both.
    assert reads(services, "gl:platform/vault/-/issues/1#note-1", person("pat"))
    assert reads(services, "gl:platform/vault/-/issues/1#note-1", person("sam"))
    assert not reads(services, "gl:platform/vault/-/issues/1#note-1", person("gil"))
    assert not reads(services, "gl:platform/vault/-/issues/1#note-1", person("gwen"))  # a guest in sre
    # The documents route answers the same: 404 for who may not read, exactly like a missing document.
    with TestClient(create_app(services.settings, services=services)) as client:
        resolve_links(client.app, lambda p: {f"gitlab:user:{user_id(p.user)}"})

        def get(doc_id, user, groups=()):
            tok = TokenStore(services.catalog.engine).create(user, list(groups))[0]
            # `#` starts a URL's fragment: a note's id goes into the path as %23.
            return client.get(f"/v1/documents/{quote(doc_id)}", headers={"Authorization": f"Bearer {tok}"})
        assert get(NOTE, "rita").status_code == 200 and SECRET in get(NOTE, "rita").json()["content"]
        assert get(NOTE, "gus").status_code == 404 and get(NOTE, "olga", ["org-all"]).status_code == 404
        assert SECRET not in get("gl:platform/checkout/-/issues/1", "gus").json()["content"]


def test_notes_follow_their_ticket_through_incremental_syncs(services, gitlab):
    seed_notes(gitlab)
    register(services, gitlab_source(gitlab, code=False))
    sync(services, "gl")
    gitlab.add_note(gitlab.internal, "issues", 1, "Internal: ledger fix needs the finance sign-off", internal=True)
    gitlab.delete_note(gitlab.public, "issues", 1, 2)
    counts = sync(services, "gl")
    docs = indexed(services, "gl")
    assert "gl:platform/payments/-/issues/1#note-1" in docs and NOTE not in docs and counts.files_deleted == 1
    assert consistent(services, "gl")


def _no_content_reads(fake, allowed_notes=()):
    """The pass read no single item, no description, no clone; notes only of tickets with indexed notes."""
    assert not fake.server.requests(r"/(issues|merge_requests)/\d+$")
    assert not fake.server.requests(r"\.git/")
    assert {s.path for s in fake.server.requests(r"/notes$")} <= set(allowed_notes)


def _notes_path(project, kind, iid):
    return f"/api/v4/projects/{project.id}/{kind}/{iid}/notes"


def test_an_idle_permissions_pass_changes_nothing_and_reads_little(services, gitlab):
    seed_notes(gitlab)
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    gitlab.server.clear_log()
    items, counts = permissions_pass(services, "gl")
    assert items == [] and counts.docs_changed == 0
    notes = {_notes_path(gitlab.public, "issues", 1), _notes_path(gitlab.public, "issues", 3),
             _notes_path(gitlab.private, "issues", 1)}
    _no_content_reads(gitlab, notes)
    # group listing + per project: members/all (+ each shared group's members) + one listing per indexed kind.
    assert len(gitlab.server.requests(r"/members/all$")) == 4
    assert len(gitlab.server.requests()) == 1 + 4 + 4 + len(notes)


def _visibility(fake):
    fake.public.visibility = "private"
    return [person("stranger"), person("gus", frozenset({"org-all"}))], "gl:platform/checkout/cart/checkout.py"


def _member_removed(fake):
    del fake.private.members["pat"]
    return [person("pat")], "gl:platform/vault/-/issues/1#note-1"


def _shared_member_removed(fake):
    del fake.group_members["platform/sre"]["sam"]
    return [person("sam")], "gl:platform/vault/-/issues/1"


def _feature_private(fake):
    fake.public.levels["issues"] = "private"
    return [person("stranger")], "gl:platform/checkout/-/issues/2"


def _made_confidential(fake):
    fake.update_item(fake.public, "issues", 2, confidential=True)
    return [person("stranger"), person("gus")], "gl:platform/checkout/-/issues/2"


def _demoted(fake):
    fake.public.members["rita"] = GUEST
    return [person("rita")], NOTE


TIGHTENINGS = {"visibility tightened": _visibility, "member removed": _member_removed,
               "shared group member removed": _shared_member_removed, "feature made private": _feature_private,
               "issue made confidential": _made_confidential, "reporter demoted to guest": _demoted}


@pytest.mark.parametrize("change", list(TIGHTENINGS))
def test_each_tightening_is_applied_by_the_permissions_pass_without_reading_content(services, gitlab, change):
    seed_notes(gitlab)
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    losers, doc_id = TIGHTENINGS[change](gitlab)
    assert all(reads(services, doc_id, who) for who in losers)
    gitlab.server.clear_log()
    items, counts = permissions_pass(services, "gl")
    assert items and all(isinstance(i, AccessChange) for i in items) and counts.chunks_embedded == 0
    assert not any(reads(services, doc_id, who) for who in losers)
    _no_content_reads(gitlab, {_notes_path(gitlab.public, "issues", 1), _notes_path(gitlab.public, "issues", 3),
                               _notes_path(gitlab.private, "issues", 1)})
    assert consistent(services, "gl")
    # What the pass wrote is exactly what a sync computes: a sync after it changes nothing more.
    before = indexed(services, "gl")
    digests = services.catalog.access_digests("gl")
    again = sync(services, "gl")
    assert services.catalog.access_digests("gl") == digests and set(indexed(services, "gl")) == set(before)
    # The sync re-reads the items whose version records the old access, but writes and embeds nothing
    # (making an issue confidential also edits it: "confidential" is in its text).
    assert (again.chunks_written, again.chunks_embedded) == ((1, 1) if change == "issue made confidential" else (0, 0))


def test_deletions_are_applied_by_the_permissions_pass(services, gitlab):
    seed_notes(gitlab)
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    gitlab.delete_item(gitlab.public, "issues", 1)  # with its internal note
    gitlab.delete_note(gitlab.public, "issues", 3, 1)
    gitlab.delete_item(gitlab.public, "merge_requests", 1)
    del gitlab.projects[gitlab.private.id]  # the project left the group: everything of it goes
    gitlab.server.clear_log()
    items, _ = permissions_pass(services, "gl")
    gone = {"gl:platform/checkout/-/issues/1", NOTE, "gl:platform/checkout/-/issues/3#note-1",
            "gl:platform/checkout/-/merge_requests/1", "gl:platform/vault/-/issues/1",
            "gl:platform/vault/-/issues/1#note-1"}
    assert {i.doc_id for i in items if isinstance(i, Deletion)} == gone and len(items) == len(gone)
    assert not gone & set(indexed(services, "gl")) and consistent(services, "gl")
    _no_content_reads(gitlab, {_notes_path(gitlab.public, "issues", 3)})


def test_a_project_that_cannot_be_read_is_a_failure_and_keeps_its_access(services, gitlab):
    seed_notes(gitlab)
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    del gitlab.private.members["pat"]
    gitlab.server.fail(rf"/projects/{gitlab.private.id}/members/all$", 500, times=10)
    items, _ = permissions_pass(services, "gl")
    assert [type(i).__name__ for i in items] == ["SyncFailure"] and items[0].item == "platform/vault/"


REFRESHED = {"member removed": ("gl:platform/vault/-/issues/1", [person("pat")]),
             "issue made confidential": ("gl:platform/checkout/-/issues/2", [person("stranger"), person("gus")]),
             "visibility tightened": ("gl:platform/checkout/-/issues/1", [person("stranger")])}


@pytest.mark.parametrize("change", list(REFRESHED))
def test_refresh_reads_the_named_tickets_again_now(services, gitlab, change):
    seed_notes(gitlab)
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    TIGHTENINGS[change](gitlab)
    ticket, losers = REFRESHED[change]
    assert all(reads(services, ticket, who) for who in losers)
    gitlab.server.clear_log()
    items = refreshed(services, [ticket])
    assert ticket in {i.id for i in items if isinstance(i, Document)}
    assert not any(reads(services, ticket, who) for who in losers)
    # Only that ticket was read: its project, members, the item and its notes; no listing, no clone.
    assert not gitlab.server.requests(r"\.git/") and not gitlab.server.requests(r"/groups/platform/projects")
    assert not gitlab.server.requests(r"/(issues|merge_requests)$")
    assert consistent(services, "gl")


def test_refresh_deletes_gone_tickets_and_notes_and_leaves_code_to_the_sync(services, gitlab):
    seed_notes(gitlab)
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    gitlab.delete_item(gitlab.public, "issues", 2)
    gitlab.delete_note(gitlab.public, "issues", 1, 2)
    gitlab.add_note(gitlab.public, "issues", 3, "Internal: export disabled", author="rita", internal=True)
    gitlab.server.clear_log()
    items = refreshed(services, ["gl:platform/checkout/-/issues/2", NOTE, "gl:platform/checkout/-/issues/3",
                                 "gl:platform/checkout/cart/checkout.py"])
    assert {i.doc_id for i in items if isinstance(i, Deletion)} == {"gl:platform/checkout/-/issues/2", NOTE}
    assert {i.id for i in items if isinstance(i, Document)} == {
        "gl:platform/checkout/-/issues/1", "gl:platform/checkout/-/issues/3",
        "gl:platform/checkout/-/issues/3#note-1", "gl:platform/checkout/-/issues/3#note-2"}
    assert not gitlab.server.requests(r"\.git/")
    assert "gl:platform/checkout/cart/checkout.py" in indexed(services, "gl")
    assert reads(services, "gl:platform/checkout/-/issues/3#note-2", person("rita"))
    assert connector_of(services).refreshes_items


def _state(fake):
    return {p.path: (p.visibility, p.levels, p.members, p.shares) for p in fake.projects.values()}, fake.group_members


def _oracle(fake, doc_id, user, signed_in):
    rel = doc_id.split(":", 1)[1]
    base, _, note = rel.partition("#note-")
    for project in fake.projects.values():
        if not base.startswith(project.path + "/"):
            continue
        rest = base[len(project.path) + 1:]
        for kind in ("issues", "merge_requests"):
            if rest.startswith(f"-/{kind}/"):
                return fake.can_read(user, signed_in, project, kind, int(rest.split("/")[-1]),
                                     int(note) if note else None)
        return fake.can_read(user, signed_in, project)
    return False


@pytest.mark.parametrize("seed", [1, 2])
def test_randomized_readers_never_see_more_than_gitlab_allows(services, gitlab, seed):
    """Random memberships, shares, features and items; each user × each document, by search and by the
    documents route, against the fake's own statement of GitLab's rules; then random tightenings applied
    by the permissions pass, checked again."""
    rng = random.Random(seed)
    users = ["alice", "gus", "pat", "gil", "sam", "gwen", "rita", "ivan", "zoe", "yan"]
    levels = [0, 10, 15, 20, 30, 40]
    gitlab.add_group("platform/ops", members={u: rng.choice(levels) for u in rng.sample(users, 4)})
    gitlab.group_members["platform"] = {u: rng.choice(levels) for u in rng.sample(users, 2)}
    for project in (gitlab.public, gitlab.internal, gitlab.private):
        project.members = {u: rng.choice(levels[1:]) for u in rng.sample(users, 3)}
        project.shares = rng.choice([{}, {"platform/sre": rng.choice(levels[1:])},
                                     {"platform/ops": rng.choice(levels[1:])}])
        project.levels = {f: rng.choice(["enabled", "enabled", "private"]) for f in ("issues", "merge_requests",
                                                                                      "repository")}
        for n in range(3):
            kind = rng.choice(["issues", "merge_requests"])
            item = gitlab.add_item(project, kind, f"Random {kind} {n}", f"random checkout item {n}",
                                   confidential=kind == "issues" and rng.random() < 0.4,
                                   author=rng.choice(users), assignees=rng.sample(users, rng.randint(0, 2)))
            for m in range(2):
                gitlab.add_note(project, kind, item["iid"], f"random checkout note {n}.{m}",
                                internal=rng.random() < 0.5, author=rng.choice(users))
    gitlab.blocked.add(rng.choice(users))
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    # Signed-in users hold the org-wide group; a blocked account's token (if any) no longer does.
    who = [(u, u not in gitlab.blocked and rng.random() < 0.5) for u in users]
    who += [("outsider", False), ("member-of-org", True)]

    def check():
        docs = sorted(indexed(services, "gl"))
        store = TokenStore(services.catalog.engine)
        with TestClient(create_app(services.settings, services=services)) as client:
            resolve_links(client.app, lambda p: {f"gitlab:user:{user_id(p.user)}"})
            for user, signed_in in who:
                principal = person(user, frozenset({"org-all"}) if signed_in else frozenset())
                found = found_docs(services, "random checkout item note cart gateway", principal)
                allowed = {d for d in docs if _oracle(gitlab, d, user, signed_in)}
                assert found <= allowed, (user, signed_in, found - allowed, _state(gitlab))
                tok = store.create(user, ["org-all"] if signed_in else [])[0]
                for doc_id in docs:
                    status = client.get(f"/v1/documents/{quote(doc_id)}",
                                        headers={"Authorization": f"Bearer {tok}"}).status_code
                    assert (status == 200) <= (doc_id in allowed), (user, doc_id)
        return docs

    assert len(check()) > 10
    # Random tightenings, applied by the permissions pass alone.
    project = rng.choice([gitlab.public, gitlab.internal, gitlab.private])
    project.visibility = "private"
    project.members.pop(next(iter(project.members)), None)
    gitlab.public.levels["issues"] = "private"
    for p in gitlab.projects.values():
        for iid in list(p.items["issues"]):
            if rng.random() < 0.3:
                gitlab.update_item(p, "issues", iid, confidential=True)
    permissions_pass(services, "gl")
    check()

