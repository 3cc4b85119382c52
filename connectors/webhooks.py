"""What a GitLab, Jira or Confluence webhook names: each product's event payload → the documents to read again.

Pure functions, one per product: no I/O, no secrets. Doc ids are built exactly as each connector names its
documents (gitlab_tickets.ticket_path, jira `<source>:<KEY>`, confluence `<source>:<SPACE>/<id>`), with a
restricted part's suffix (`#note-<id>`, `#comment-<id>`) when the event is about one."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.base import document_id
from connectors.gitlab_tickets import ticket_path

# The source row's config key holding the hex SHA-256 of the source's webhook secret (never the secret).
SECRET_KEY = "webhook_secret_sha256"
# The header carrying a delivery's id, unchanged across the product's retries (dedupe key).
DELIVERY_HEADERS = {"gitlab": "x-gitlab-event-uuid", "jira": "x-atlassian-webhook-identifier",
                    "confluence": "x-atlassian-webhook-identifier"}
WEBHOOK_KINDS = tuple(DELIVERY_HEADERS)


class WebhookPayloadError(ValueError):
    """The body is not an event of the product it claims to come from (a 400, never a job)."""


@dataclass(frozen=True)
class WebhookTargets:
    """What one or more events ask for: read these documents again, run an incremental sync, run a
    permissions pass."""

    doc_ids: tuple[str, ...] = ()
    sync: bool = False
    access_pass: bool = False

    def merge(self, other: WebhookTargets) -> WebhookTargets:
        return WebhookTargets(tuple(dict.fromkeys(self.doc_ids + other.doc_ids)), self.sync or other.sync,
                              self.access_pass or other.access_pass)

    @property
    def empty(self) -> bool:
        return not (self.doc_ids or self.sync or self.access_pass)

    def as_json(self) -> dict[str, Any]:
        return {"doc_ids": list(self.doc_ids), "sync": self.sync, "access_pass": self.access_pass}


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WebhookPayloadError(f"{what} is missing or not an object")
    return value


def _text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise WebhookPayloadError(f"{what} is missing")
    text = str(value).strip()
    if any(c in text for c in "\n\r\x00") or len(text) > 1000:
        raise WebhookPayloadError(f"{what} is not a valid identifier")
    return text


# -- GitLab ---------------------------------------------------------------------------------------

GITLAB_MEMBER_EVENTS = frozenset({
    "user_add_to_team", "user_remove_from_team", "user_update_for_team",  # project members
    "user_add_to_group", "user_remove_from_group", "user_update_for_group",  # group members
    "user_access_request_to_group", "user_access_request_revoked_for_group"})
# New or changed paths (documents under other ids) need a sync; every project event may change access.
GITLAB_PROJECT_EVENTS = {"project_create": True, "project_rename": True, "project_transfer": True,
                         "project_update": False, "project_destroy": False}
NOTEABLE = {"Issue": ("issue", "issues"), "MergeRequest": ("merge_request", "merge_requests")}


def _gitlab_project(payload: Mapping[str, Any]) -> str:
    return _text(_object(payload.get("project"), "project").get("path_with_namespace"), "project.path_with_namespace")


def _gitlab_ticket(source: str, project: str, kind: str, item: Mapping[str, Any], what: str) -> str:
    return document_id(source, ticket_path(project, kind, _text(item.get("iid"), f"{what}.iid")))


def gitlab_targets(source: str, payload: Mapping[str, Any]) -> WebhookTargets | None:
    """Push and tag push: an incremental sync (git's is the diff). Issue, merge request: the ticket. Note:
    its ticket, and the note's own document when it is internal. Member and project events: a permissions
    pass (and a sync when paths changed). None: an event Cairn does not use."""
    kind = payload.get("object_kind")
    event = payload.get("event_name")
    if kind in ("push", "tag_push"):
        return WebhookTargets(sync=True)
    if kind == "issue" or kind == "merge_request":
        project = _gitlab_project(payload)
        plural = "issues" if kind == "issue" else "merge_requests"
        item = _object(payload.get("object_attributes"), "object_attributes")
        return WebhookTargets((_gitlab_ticket(source, project, plural, item, "object_attributes"),))
    if kind == "note":
        return _gitlab_note(source, payload)
    if event in GITLAB_MEMBER_EVENTS:
        return WebhookTargets(access_pass=True)
    if event in GITLAB_PROJECT_EVENTS:
        return WebhookTargets(sync=GITLAB_PROJECT_EVENTS[str(event)], access_pass=True)
    return None


def _gitlab_note(source: str, payload: Mapping[str, Any]) -> WebhookTargets | None:
    note = _object(payload.get("object_attributes"), "object_attributes")
    noteable = NOTEABLE.get(str(note.get("noteable_type") or ""))
    if noteable is None:
        return None  # a comment on a commit or snippet: nothing Cairn indexes
    key, plural = noteable
    ticket = _gitlab_ticket(source, _gitlab_project(payload), plural, _object(payload.get(key), key), key)
    if note.get("internal") or note.get("confidential"):
        return WebhookTargets((ticket, f"{ticket}#note-{_text(note.get('id'), 'object_attributes.id')}"))
    return WebhookTargets((ticket,))


# -- Jira -----------------------------------------------------------------------------------------

JIRA_ISSUE_EVENTS = frozenset({"jira:issue_created", "jira:issue_updated", "jira:issue_deleted"})
JIRA_COMMENT_EVENTS = frozenset({"comment_created", "comment_updated", "comment_deleted"})


def jira_targets(source: str, payload: Mapping[str, Any]) -> WebhookTargets | None:
    """Issue events: the issue (and its old key when it moved to another project or was renamed).
    Comment events: the issue and the comment's own document (a restricted comment is one); without the
    issue in the payload (old Jira Server), an incremental sync finds it."""
    event = payload.get("webhookEvent")
    if event in JIRA_ISSUE_EVENTS:
        issue = _object(payload.get("issue"), "issue")
        ids = [document_id(source, _text(issue.get("key"), "issue.key"))]
        ids += [document_id(source, old) for old in _jira_old_keys(payload.get("changelog"))]
        return WebhookTargets(tuple(dict.fromkeys(ids)))
    if event in JIRA_COMMENT_EVENTS:
        comment = _object(payload.get("comment"), "comment")
        comment_id = _text(comment.get("id"), "comment.id")
        if payload.get("issue") is None:
            return WebhookTargets(sync=True)
        parent = document_id(source, _text(_object(payload["issue"], "issue").get("key"), "issue.key"))
        return WebhookTargets((parent, f"{parent}#comment-{comment_id}"))
    return None


def _jira_old_keys(changelog: Any) -> list[str]:
    """Keys the issue had before this change (a move to another project gives it a new key)."""
    items = changelog.get("items") if isinstance(changelog, Mapping) else None
    return [_text(item["fromString"], "changelog key") for item in (items if isinstance(items, list) else [])
            if isinstance(item, Mapping) and str(item.get("field", "")).lower() == "key" and item.get("fromString")]


# -- Confluence -----------------------------------------------------------------------------------

# Data Center names its events `page_created`, `blog_trashed`, ...; Forge's `avi:confluence:created:page`
# are normalised to the same names. True: the change may change descendants' access (a permissions pass).
CONFLUENCE_CONTENT_EVENTS = {f"{kind}_{verb}": verb == "moved"
                             for kind in ("page", "blog") for verb in ("created", "updated", "trashed", "restored",
                                                                       "removed", "moved")}
CONFLUENCE_CONTENT_EVENTS |= {"content_permissions_updated": True, "content_restrictions_updated": True,
                              "page_permissions_updated": True, "page_restrictions_updated": True,
                              "content_created": False, "content_updated": False, "content_trashed": False,
                              "content_restored": False, "content_removed": False,
                              "label_added": False, "label_removed": False}
CONFLUENCE_COMMENT_EVENTS = frozenset({"comment_created", "comment_updated", "comment_removed"})
# A space's view permissions changed: no content is named, every page of the space may change access.
CONFLUENCE_SPACE_PERMISSION_EVENTS = frozenset({"space_permissions_updated"})
CONTENT_KEYS = ("page", "blog", "blogpost", "content", "labeled", "labelled")
PREVIOUS_KEYS = ("prevContent", "oldParent", "originalPage")


def confluence_event(payload: Mapping[str, Any]) -> str:
    """The event's name: Data Center's `event`, or Forge's `eventType` as `<type>_<verb>`."""
    name = str(payload.get("event") or payload.get("webhookEvent") or payload.get("eventType") or "")
    if name.startswith("avi:confluence:"):
        _, _, verb, kind = [*name.split(":"), "", ""][:4]
        name = f"{'blog' if kind == 'blogpost' else kind}_{verb}"
    return name


def _space_key(content: Mapping[str, Any]) -> str | None:
    space = content.get("space")
    key = content.get("spaceKey") or (space.get("key") if isinstance(space, Mapping) else None)
    return str(key) if key else None


def _page_id(source: str, content: Mapping[str, Any], what: str) -> str:
    space = _text(_space_key(content), f"{what}.spaceKey")
    return document_id(source, f"{space}/{_text(content.get('id'), f'{what}.id')}")


def confluence_targets(source: str, payload: Mapping[str, Any]) -> WebhookTargets | None:
    """Page and blog post events: the content (and its id under the space it left, on a move); a move or
    a restriction change also runs a permissions pass (descendants' access follows). Comments: their
    page and the comment's own document. A space permission change: a permissions pass."""
    event = confluence_event(payload)
    if event in CONFLUENCE_SPACE_PERMISSION_EVENTS:
        return WebhookTargets(access_pass=True)
    if event in CONFLUENCE_COMMENT_EVENTS:
        comment = _object(payload.get("comment"), "comment")
        parent = comment.get("parent") or comment.get("container") or payload.get("page") or payload.get("blog")
        page = _page_id(source, _object(parent, "comment.parent"), "comment.parent")
        return WebhookTargets((page, f"{page}#comment-{_text(comment.get('id'), 'comment.id')}"))
    if event not in CONFLUENCE_CONTENT_EVENTS:
        return None
    key = next((k for k in CONTENT_KEYS if isinstance(payload.get(k), Mapping)), None)
    if key is None:
        raise WebhookPayloadError(f"a {event} event without its content (page, blog or content)")
    content = payload[key]
    ids = [_page_id(source, content, key)]
    # the same content id under the space it was in before (a move across spaces changes the doc id)
    before = {_space_key(p) for p in (payload.get(k) for k in PREVIOUS_KEYS) if isinstance(p, Mapping)}
    ids += [document_id(source, f"{space}/{_text(content.get('id'), f'{key}.id')}")
            for space in sorted(s for s in before if s and s != _space_key(content))]
    return WebhookTargets(tuple(dict.fromkeys(ids)), access_pass=CONFLUENCE_CONTENT_EVENTS[event])


# -- dispatch -------------------------------------------------------------------------------------

PARSERS: dict[str, Callable[[str, Mapping[str, Any]], WebhookTargets | None]] = {
    "gitlab": gitlab_targets, "jira": jira_targets, "confluence": confluence_targets}


def parse_event(kind: str, source: str, payload: Any) -> WebhookTargets | None:
    """The targets of one event of a `kind` source; None for an event Cairn does not use.
    Raises WebhookPayloadError for a body that is not such an event."""
    if kind not in PARSERS:
        raise WebhookPayloadError(f"{kind} sources take no webhooks")
    if not isinstance(payload, Mapping):
        raise WebhookPayloadError("the body is not a JSON object")
    targets = PARSERS[kind](source, payload)
    return None if targets is None or targets.empty else targets


def delivery_id(kind: str, headers: Mapping[str, str]) -> str:
    """The delivery's id from its header ("" when the product sends none), bounded."""
    header = DELIVERY_HEADERS.get(kind)
    value = headers.get(header, "") if header else ""
    return value.strip()[:200]
