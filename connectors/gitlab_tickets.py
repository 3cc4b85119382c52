"""GitLab issues and merge requests as Documents: description, comments and the facts around them; each internal
note as its own Document (`<ticket id>#note-<id>`), since fewer people may read it than the ticket."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connectors.base import document_id
from connectors.checkpoints import item_version
from connectors.rendering.markdown import without_html_comments
from indexer.models import Access, Document

KINDS = {"issues": ("issue", "#", "Issue"), "merge_requests": ("merge_request", "!", "Merge request")}


def ticket_path(project_path: str, kind: str, iid: Any) -> str:
    """`group/project/-/issues/12`: the item's own web path, so a project's path prefix covers it."""
    return f"{project_path}/-/{kind}/{iid}"


def _who(person: Any) -> str:
    return f"@{person['username']}" if isinstance(person, Mapping) and person.get("username") else ""


def _people(people: Iterable[Any]) -> str:
    return ", ".join(filter(None, (_who(p) for p in people or [])))


def _facts(project_path: str, kind: str, item: Mapping[str, Any]) -> list[str]:
    _, sigil, label = KINDS[kind]
    facts = [f"{label} {project_path}{sigil}{item.get('iid')}", f"state: {item.get('state', '')}"]
    if item.get("confidential"):
        facts.append("confidential")
    if kind == "merge_requests":
        facts.append(f"{item.get('source_branch', '')} → {item.get('target_branch', '')}")
        if item.get("draft"):
            facts.append("draft")
    people = [f"author: {_who(item.get('author'))}"]
    if item.get("assignees"):
        people.append(f"assignees: {_people(item['assignees'])}")
    if item.get("reviewers"):
        people.append(f"reviewers: {_people(item['reviewers'])}")
    lines = [" · ".join(facts), " · ".join(people)]
    extra = []
    if item.get("labels"):
        extra.append("labels: " + ", ".join(str(label) for label in item["labels"]))
    milestone = item.get("milestone")
    if isinstance(milestone, Mapping) and milestone.get("title"):
        extra.append(f"milestone: {milestone['title']}")
    extra.append(f"created: {item.get('created_at', '')} · updated: {item.get('updated_at', '')}")
    return [*lines, " · ".join(extra)]


def is_internal(note: Mapping[str, Any]) -> bool:
    """An internal note (`confidential` is its name before GitLab 15.0)."""
    return bool(note.get("internal") or note.get("confidential"))


def visible_notes(notes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Human comments everyone reading the ticket reads: no system notes ("changed the label"), no internal
    notes (those become their own documents)."""
    return [n for n in notes if not n.get("system") and not is_internal(n) and str(n.get("body") or "").strip()]


def internal_notes(notes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Human internal notes with text, each of which is indexed as its own document."""
    return [n for n in notes if not n.get("system") and is_internal(n) and n.get("id") is not None
            and str(n.get("body") or "").strip()]


NOTE_SUFFIX = "#note-"


def note_path(ticket: str, note_id: Any) -> str:
    """`group/project/-/issues/12#note-345`: the ticket's path and the note's id."""
    return f"{ticket}{NOTE_SUFFIX}{note_id}"


def ticket_text(project_path: str, kind: str, item: Mapping[str, Any], notes: Iterable[Mapping[str, Any]],
                max_chars: int) -> tuple[str, bool]:
    """The document text (Markdown) and whether it had to be cut to `max_chars`."""
    head = [f"# {item.get('title', '')}", "", *_facts(project_path, kind, item), ""]
    description = without_html_comments(str(item.get("description") or "").strip(), keep_if_empty=False)
    body = [description, ""] if description else []
    comments: list[str] = []
    for note in visible_notes(notes):
        comments += [f"### {_who(note.get('author')) or 'someone'} · {note.get('created_at', '')}", "",
                     without_html_comments(str(note["body"]).strip(), keep_if_empty=False), ""]
    if comments:
        comments.insert(0, "## Comments\n")
    text = "\n".join(head + body + comments).strip() + "\n"
    if len(text) <= max_chars:
        return text, False
    return text[:max_chars].rsplit("\n", 1)[0] + "\n\n(truncated)\n", True


def ticket_document(source: str, project_path: str, kind: str, item: Mapping[str, Any],
                    notes: Iterable[Mapping[str, Any]], access: Access, max_chars: int,
                    access_key: str = "") -> Document:
    """The ticket without its internal notes. `access_key` (default: the access's digest) goes into the version:
    the connector passes one that also changes with who reads the ticket's internal notes."""
    path = ticket_path(project_path, kind, item.get("iid"))
    text, truncated = ticket_text(project_path, kind, item, notes, max_chars)
    metadata = {"project": project_path, "iid": str(item.get("iid")), "state": str(item.get("state", "")),
                "updated_at": str(item.get("updated_at", ""))}
    if truncated:
        metadata["truncated"] = "true"
    return Document(id=document_id(source, path), source=source, path=path, content=text,
                    version=item_version(str(item.get("updated_at", "")), access_key or access.digest()),
                    access=access, kind=KINDS[kind][0], language="markdown", title=str(item.get("title", "")),
                    url=str(item.get("web_url", "")), metadata=metadata)


def note_document(source: str, project_path: str, kind: str, item: Mapping[str, Any], note: Mapping[str, Any],
                  access: Access, max_chars: int) -> Document:
    """One internal note as a document of its own: the ticket's heading, who wrote it, and the note."""
    ticket = ticket_path(project_path, kind, item.get("iid"))
    path = note_path(ticket, note["id"])
    _, sigil, label = KINDS[kind]
    text = "\n".join([f"# {item.get('title', '')} (internal note)", "",
                      (f"Internal note on {label.lower()} {project_path}{sigil}{item.get('iid')} · "
                      f"{_who(note.get('author')) or 'someone'} · {note.get('created_at', '')}"), "",
                      without_html_comments(str(note.get("body") or "").strip(), keep_if_empty=False)]).strip() + "\n"
    metadata = {"project": project_path, "iid": str(item.get("iid")), "note": str(note["id"]), "internal": "true",
                "updated_at": str(note.get("updated_at", ""))}
    if len(text) > max_chars:
        text = text[:max_chars].rsplit("\n", 1)[0] + "\n\n(truncated)\n"
        metadata["truncated"] = "true"
    web = str(item.get("web_url", ""))
    return Document(id=document_id(source, path), source=source, path=path, content=text,
                    version=item_version(str(note.get("updated_at", "")), access.digest()), access=access,
                    kind=KINDS[kind][0], language="markdown", title=f"{item.get('title', '')} (internal note)",
                    url=f"{web}#note_{note['id']}" if web else "", metadata=metadata)
