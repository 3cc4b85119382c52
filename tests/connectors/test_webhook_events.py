"""Webhook payloads of GitLab, Jira and Confluence → the documents to read again (connectors/webhooks.py).

Payloads are shaped like the products' own (trimmed to the fields that matter plus some that do not);
the doc ids are checked against how each connector names its documents."""
from __future__ import annotations

import copy

import pytest

from connectors.base import document_id
from connectors.config import parse_source
from connectors.confluence import ConfluenceConnector
from connectors.gitlab_tickets import ticket_path
from connectors.jira import JiraConnector
from connectors.webhooks import WebhookPayloadError, WebhookTargets, confluence_event, delivery_id, parse_event

PROJECT = {"id": 15, "name": "billing", "path_with_namespace": "platform/billing", "visibility_level": 0,
           "web_url": "https://gitlab.example.com/platform/billing"}
USER = {"id": 1, "name": "Ada", "username": "ada"}


def gitlab_issue(action: str = "update", confidential: bool = False) -> dict:
    return {"object_kind": "issue", "event_type": "confidential_issue" if confidential else "issue", "user": USER,
            "project": PROJECT, "object_attributes": {"id": 301, "iid": 23, "title": "Refunds fail",
                                                      "action": action, "confidential": confidential,
                                                      "state": "opened", "updated_at": "2024-05-01 10:00:00 UTC"},
            "changes": {"title": {"previous": "Refund", "current": "Refunds fail"}}}


def gitlab_note(noteable: str, internal: bool) -> dict:
    payload = {"object_kind": "note", "event_type": "confidential_note" if internal else "note", "user": USER,
               "project_id": 15, "project": PROJECT,
               "object_attributes": {"id": 1244, "note": "looks wrong", "noteable_type": noteable,
                                     "internal": internal, "confidential": internal, "system": False}}
    if noteable == "Issue":
        payload["issue"] = {"id": 301, "iid": 23, "title": "Refunds fail"}
    elif noteable == "MergeRequest":
        payload["merge_request"] = {"id": 99, "iid": 7, "title": "Fix refunds"}
    else:
        payload["commit"] = {"id": "cfe32cf61b73a0d5e9f13e774abde7ff789b1660"}
    return payload


ISSUE_23 = document_id("gl", ticket_path("platform/billing", "issues", 23))
MR_7 = document_id("gl", ticket_path("platform/billing", "merge_requests", 7))

GITLAB_CASES = [
    ("push", {"object_kind": "push", "event_name": "push", "before": "95790bf8", "after": "da1560886",
              "ref": "refs/heads/main", "project": PROJECT, "commits": [], "total_commits_count": 1},
     WebhookTargets(sync=True)),
    ("tag push", {"object_kind": "tag_push", "event_name": "tag_push", "ref": "refs/tags/v1.0.0",
                  "project": PROJECT}, WebhookTargets(sync=True)),
    ("issue", gitlab_issue(), WebhookTargets((ISSUE_23,))),
    ("confidential issue", gitlab_issue("close", confidential=True), WebhookTargets((ISSUE_23,))),
    ("merge request", {"object_kind": "merge_request", "event_type": "merge_request", "user": USER,
                       "project": PROJECT, "object_attributes": {"id": 99, "iid": 7, "action": "merge",
                                                                 "source_branch": "fix", "target_branch": "main"}},
     WebhookTargets((MR_7,))),
    ("note on an issue", gitlab_note("Issue", internal=False), WebhookTargets((ISSUE_23,))),
    ("internal note on an issue", gitlab_note("Issue", internal=True),
     WebhookTargets((ISSUE_23, f"{ISSUE_23}#note-1244"))),
    ("note on a merge request", gitlab_note("MergeRequest", internal=False), WebhookTargets((MR_7,))),
    ("member added to a project", {"event_name": "user_add_to_team", "project_id": 15,
                                   "project_path_with_namespace": "platform/billing", "user_username": "bob",
                                   "access_level": "Developer"}, WebhookTargets(access_pass=True)),
    ("member removed from a group", {"event_name": "user_remove_from_group", "group_id": 78,
                                     "group_path": "platform", "user_username": "bob", "group_access": "Guest"},
     WebhookTargets(access_pass=True)),
    ("project visibility changed", {"event_name": "project_update", "project_id": 15, "name": "billing",
                                    "path_with_namespace": "platform/billing", "project_visibility": "private"},
     WebhookTargets(access_pass=True)),
    ("project transferred", {"event_name": "project_transfer", "project_id": 15,
                             "path_with_namespace": "finance/billing",
                             "old_path_with_namespace": "platform/billing"},
     WebhookTargets(sync=True, access_pass=True)),
    ("project destroyed", {"event_name": "project_destroy", "project_id": 15,
                           "path_with_namespace": "platform/billing"}, WebhookTargets(access_pass=True)),
]


@pytest.mark.parametrize(("what", "payload", "expected"), GITLAB_CASES, ids=[c[0] for c in GITLAB_CASES])
def test_gitlab_events(what, payload, expected):
    assert parse_event("gitlab", "gl", payload) == expected


@pytest.mark.parametrize("payload", [gitlab_note("Commit", internal=False),
                                     {"object_kind": "pipeline", "object_attributes": {"id": 1}},
                                     {"object_kind": "wiki_page", "project": PROJECT}])
def test_gitlab_events_cairn_does_not_use_are_ignored(payload):
    assert parse_event("gitlab", "gl", payload) is None


def jira_issue_event(event: str, key: str = "SHOP-12", changelog: list | None = None) -> dict:
    payload = {"timestamp": 1714557600000, "webhookEvent": event, "issue_event_type_name": "issue_generic",
               "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Ada"},
               "issue": {"id": "10012", "key": key, "self": "https://example.atlassian.net/rest/api/2/issue/10012",
                         "fields": {"summary": "Refunds fail", "project": {"key": key.split("-")[0]},
                                    "updated": "2024-05-01T10:00:00.000+0000"}}}
    if changelog is not None:
        payload["changelog"] = {"id": "10500", "items": changelog}
    return payload


def jira_comment_event(event: str, with_issue: bool = True) -> dict:
    payload = {"timestamp": 1714557600000, "webhookEvent": event,
               "comment": {"id": "10080", "self": "https://example.atlassian.net/rest/api/2/issue/10012/comment/10080",
                           "body": "only devs", "visibility": {"type": "role", "value": "Developers"}}}
    if with_issue:
        payload["issue"] = jira_issue_event("jira:issue_updated")["issue"]
    return payload


SHOP_12 = document_id("jira", "SHOP-12")

JIRA_CASES = [
    ("issue created", jira_issue_event("jira:issue_created"), WebhookTargets((SHOP_12,))),
    ("issue updated", jira_issue_event("jira:issue_updated", changelog=[
        {"field": "status", "fieldtype": "jira", "fromString": "Open", "toString": "Done"}]),
     WebhookTargets((SHOP_12,))),
    ("issue deleted", jira_issue_event("jira:issue_deleted"), WebhookTargets((SHOP_12,))),
    ("issue moved to another project", jira_issue_event("jira:issue_updated", key="OPS-3", changelog=[
        {"field": "project", "fieldtype": "jira", "from": "10000", "fromString": "Shop", "to": "10001",
         "toString": "Ops"},
        {"field": "Key", "fieldtype": "jira", "from": None, "fromString": "SHOP-12", "to": None, "toString": "OPS-3"}]),
     WebhookTargets((document_id("jira", "OPS-3"), SHOP_12))),
    ("comment created", jira_comment_event("comment_created"), WebhookTargets((SHOP_12, f"{SHOP_12}#comment-10080"))),
    ("comment updated", jira_comment_event("comment_updated"), WebhookTargets((SHOP_12, f"{SHOP_12}#comment-10080"))),
    ("comment deleted", jira_comment_event("comment_deleted"), WebhookTargets((SHOP_12, f"{SHOP_12}#comment-10080"))),
    ("comment without its issue (old Jira Server)", jira_comment_event("comment_created", with_issue=False),
     WebhookTargets(sync=True)),
]


@pytest.mark.parametrize(("what", "payload", "expected"), JIRA_CASES, ids=[c[0] for c in JIRA_CASES])
def test_jira_events(what, payload, expected):
    assert parse_event("jira", "jira", payload) == expected


def test_doc_ids_fall_in_the_connectors_scopes():
    """Ids fall under the prefix the Jira and Confluence connectors give a project's or space's documents."""
    jira = JiraConnector(parse_source({"kind": "jira", "name": "jira", "url": "https://jira.example.com",
                                       "projects": ["SHOP"]}))
    wiki = ConfluenceConnector(parse_source({"kind": "confluence", "name": "wiki", "url": "https://wiki.example.com",
                                             "spaces": ["ENG"]}))
    assert SHOP_12.startswith(jira.scope_prefix("SHOP"))
    assert ENG_PAGE.startswith(wiki.scope_prefix("ENG"))


def confluence_page_event(event: str, space: str = "ENG", page_id: int = 98765, kind: str = "page") -> dict:
    return {"timestamp": 1714557600000, "event": event, "userKey": "8a7f808a7e6b6d4f017e6b6e7a2a0000",
            kind: {"id": page_id, "spaceKey": space, "title": "Runbook", "contentType": kind if kind == "page"
                   else "blogpost", "version": 4, "creatorKey": "8a7f808a", "lastModifierKey": "8a7f808a",
                   "creationDate": 1714550000000, "modificationDate": 1714557600000}}


ENG_PAGE = document_id("wiki", "ENG/98765")
CONFLUENCE_CASES = [
    *[(e, confluence_page_event(e), WebhookTargets((ENG_PAGE,)))
      for e in ("page_created", "page_updated", "page_trashed", "page_restored", "page_removed")],
    *[(e, confluence_page_event(e, kind="blog"), WebhookTargets((ENG_PAGE,)))
      for e in ("blog_created", "blog_updated", "blog_trashed", "blog_restored", "blog_removed")],
    ("page moved under another parent", {**confluence_page_event("page_moved"),
                                         "oldParent": {"id": 111, "spaceKey": "ENG", "title": "Old"},
                                         "newParent": {"id": 222, "spaceKey": "ENG", "title": "Secret"}},
     WebhookTargets((ENG_PAGE,), access_pass=True)),
    ("page moved to another space", {**confluence_page_event("page_moved", space="OPS"),
                                     "oldParent": {"id": 111, "spaceKey": "ENG"}, "newParent": {"id": 5, "spaceKey": "OPS"}},
     WebhookTargets((document_id("wiki", "OPS/98765"), ENG_PAGE), access_pass=True)),
    ("restrictions changed", {"event": "content_permissions_updated", "timestamp": 1714557600000,
                              "content": {"id": 98765, "spaceKey": "ENG", "contentType": "page"}},
     WebhookTargets((ENG_PAGE,), access_pass=True)),
    ("comment created", {"event": "comment_created", "timestamp": 1714557600000,
                         "comment": {"id": 4321, "spaceKey": "ENG", "contentType": "comment",
                                     "parent": {"id": 98765, "spaceKey": "ENG", "contentType": "page"}}},
     WebhookTargets((ENG_PAGE, f"{ENG_PAGE}#comment-4321"))),
    ("Forge moved event", {"eventType": "avi:confluence:moved:page", "atlassianId": "5b10",
                           "content": {"id": "98765", "type": "page", "space": {"key": "OPS"}},
                           "prevContent": {"id": "98765", "type": "page", "space": {"key": "ENG"}}},
     WebhookTargets((document_id("wiki", "OPS/98765"), ENG_PAGE), access_pass=True)),
    ("Forge permissions updated", {"eventType": "avi:confluence:permissions_updated:page",
                                   "content": {"id": "98765", "type": "page", "space": {"key": "ENG"}}},
     WebhookTargets((ENG_PAGE,), access_pass=True)),
]


@pytest.mark.parametrize(("what", "payload", "expected"), CONFLUENCE_CASES, ids=[c[0] for c in CONFLUENCE_CASES])
def test_confluence_events(what, payload, expected):
    assert parse_event("confluence", "wiki", payload) == expected


def test_confluence_event_names():
    assert confluence_event({"eventType": "avi:confluence:created:blogpost"}) == "blog_created"
    assert confluence_event({"event": "page_trashed"}) == "page_trashed"
    assert parse_event("confluence", "wiki", confluence_page_event("page_children_reordered")) is None
    assert parse_event("confluence", "wiki", {"event": "space_created", "space": {"key": "NEW"}}) is None
    revoked = {"event": "space_permissions_updated", "space": {"key": "ENG"}, "timestamp": 1714557600000}
    assert parse_event("confluence", "wiki", revoked) == WebhookTargets(access_pass=True)


MALFORMED = [
    ("gitlab", []), ("gitlab", "push"), ("jira", 12),
    ("gitlab", {**gitlab_issue(), "project": None}),
    ("gitlab", {**gitlab_issue(), "object_attributes": {"id": 1}}),  # no iid
    ("gitlab", {**gitlab_note("Issue", internal=False), "issue": {"id": 301}}),
    ("jira", {"webhookEvent": "jira:issue_updated"}),
    ("jira", {"webhookEvent": "jira:issue_updated", "issue": {"id": "1", "key": ""}}),
    ("jira", {"webhookEvent": "jira:issue_updated", "issue": {"id": "1", "key": "A-1\nB-2"}}),
    ("jira", {"webhookEvent": "comment_created", "comment": {"body": "no id"}, "issue": {"key": "A-1"}}),
    ("confluence", {"event": "page_updated"}),
    ("confluence", {"event": "page_updated", "page": {"id": 5}}),  # no space
    ("git", {"object_kind": "push"}),
]


@pytest.mark.parametrize(("kind", "payload"), MALFORMED)
def test_malformed_payloads_are_refused(kind, payload):
    with pytest.raises(WebhookPayloadError):
        parse_event(kind, "src", copy.deepcopy(payload))


def test_delivery_ids_come_from_each_products_header():
    assert delivery_id("gitlab", {"x-gitlab-event-uuid": " 1d2e-3f "}) == "1d2e-3f"
    assert delivery_id("jira", {"x-atlassian-webhook-identifier": "1-2-3"}) == "1-2-3"
    assert delivery_id("confluence", {}) == ""
    assert len(delivery_id("jira", {"x-atlassian-webhook-identifier": "x" * 5000})) == 200


def test_targets_merge_keeps_order_and_flags():
    a = WebhookTargets(("s:A-1", "s:A-2"))
    b = WebhookTargets(("s:A-2", "s:A-3"), access_pass=True)
    assert a.merge(b) == WebhookTargets(("s:A-1", "s:A-2", "s:A-3"), sync=False, access_pass=True)
    assert WebhookTargets().empty and not b.empty
