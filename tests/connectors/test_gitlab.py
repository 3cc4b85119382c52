"""The GitLab connector through python-gitlab against a fake GitLab (REST v4 + git smart HTTP), end to end."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from harness import consistent, found_docs, indexed, interrupted_sync, register, same_documents, sync

from connectors.base import AuthFailed
from indexer.models import Principal

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
    stranger = found_docs(services, query, Principal("stranger"))
    assert stranger and all(d.startswith("gl:platform/checkout/") for d in stranger)
    assert "gl:platform/checkout/-/issues/3" not in stranger  # confidential is never public
    org_user = found_docs(services, query, Principal("olga", frozenset({"org-all"})))
    assert "gl:platform/payments/-/issues/1" in org_user and not any("vault" in d for d in org_user)
    assert "gl:platform/vault/-/issues/1" in found_docs(services, query, Principal("gil"))  # guests read issues
    # The project is shared with platform/sre: its members read as their role there, capped by the share.
    assert "gl:platform/vault/-/issues/1" in found_docs(services, query, Principal("sam"))
    assert "gl:platform/vault/-/issues/1" in found_docs(services, query, Principal("gwen"))
    # A group name alone grants nothing: GitLab's roles differ member by member inside the group.
    assert not found_docs(services, query, Principal("x", frozenset({"platform/sre"}))) - stranger
    for reader in ("alice", "carla", "dina"):  # reporter+ member, author, assignee
        assert "gl:platform/checkout/-/issues/3" in found_docs(services, query, Principal(reader))
    assert "gl:platform/checkout/-/issues/3" not in found_docs(services, query, Principal("gus"))  # a guest


def test_permission_changes_are_applied_on_the_next_sync(services, gitlab):
    register(services, gitlab_source(gitlab))
    sync(services, "gl")
    assert "gl:platform/vault/-/issues/1" in found_docs(services, "vault rotation", Principal("pat"))
    del gitlab.private.members["pat"]
    gitlab.public.visibility = "private"
    gitlab.public.levels["issues"] = "private"
    counts = sync(services, "gl")
    assert counts.files_changed == 5  # every document of both projects, under its new access
    assert "gl:platform/vault/-/issues/1" not in found_docs(services, "vault rotation", Principal("pat"))
    assert not found_docs(services, "checkout deadline gateway", Principal("stranger"))
    assert "gl:platform/checkout/cart/checkout.py" in found_docs(services, "checkout deadline gateway",
                                                                 Principal("alice"))


def test_internal_without_an_org_principal_is_members_only(services, gitlab):
    register(services, gitlab_source(gitlab, internal_principal=""))
    sync(services, "gl")
    assert "gl:platform/payments/-/issues/1" not in found_docs(services, "ledger drift", Principal("olga",
                                                                                              frozenset({"org-all"})))
    assert "gl:platform/payments/-/issues/1" in found_docs(services, "ledger drift", Principal("ivan"))


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
