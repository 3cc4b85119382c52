"""Screens every document before it is chunked: secret files become skips, the rest is indexed redacted.

The pipeline calls `SecretScreen.screen` on each batch, whatever the connector, so tantivy, the vectors,
the embedding cache and the catalog's stored text only ever see redacted text. The document keeps the
source's version, so an unchanged file is not read again. Logs name the rule, document and line only."""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from indexer.documents import Document, Skipped, SkipReason
from indexer.secret_files import secret_file_reason
from indexer.secrets import Finding, SecretDetector

log = logging.getLogger(__name__)
LOGGED_FINDINGS = 20


def glob_pattern(glob: str) -> re.Pattern[str]:
    """A path glob as a regex: `**` crosses directories, `*` and `?` do not; a glob without `/` matches
    the file name in any directory (like .gitignore)."""
    if "/" not in glob.strip("/"):
        glob = "**/" + glob.strip("/")
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(glob[i], re.escape(glob[i])))
            i += 1
    return re.compile("".join(out).lstrip("/") + r"\Z")


@dataclass(frozen=True)
class Screened:
    """A batch after screening: what to index, what to skip (with the skipped documents' ids) and
    what was redacted where."""

    documents: list[Document]
    skipped: list[Skipped]
    skipped_ids: list[str] = field(default_factory=list)
    findings: dict[str, tuple[Finding, ...]] = field(default_factory=dict)  # doc id → redactions (title: line 0)


class SecretScreen:
    """The secret policy: the detector with its value allowlist, and path globs exempt from it."""

    def __init__(self, allow: Sequence[str] = (), allow_paths: Sequence[str] = ()) -> None:
        self.detector = SecretDetector(allow)
        self.allow_paths = tuple(glob_pattern(g) for g in allow_paths if g.strip())

    def exempt(self, path: str) -> bool:
        path = path.replace("\\", "/").lstrip("/")
        return any(p.match(path) for p in self.allow_paths)

    def screen(self, docs: Sequence[Document]) -> Screened:
        out = Screened([], [])
        for doc in docs:
            result, found = self.prepare(doc)
            if isinstance(result, Skipped):
                out.skipped.append(result)
                out.skipped_ids.append(doc.id)
                continue
            out.documents.append(result)
            if found:
                out.findings[doc.id] = found
        return out

    def prepare(self, doc: Document) -> tuple[Document | Skipped, tuple[Finding, ...]]:
        """The document to index (redacted, same version) with its findings, or why it is skipped."""
        if self.exempt(doc.path):
            return doc, ()
        try:
            return self._prepare(doc)
        except Exception as exc:  # noqa: BLE001 - fail closed: a file we cannot check is not indexed
            log.warning("secret scan of %s failed (%s): not indexed", doc.id, type(exc).__name__)
            return Skipped(doc.source, doc.path, SkipReason.SECRET_FILE,
                           f"secret scan failed ({type(exc).__name__}); not indexed"), ()

    def _prepare(self, doc: Document) -> tuple[Document | Skipped, tuple[Finding, ...]]:
        reason = secret_file_reason(doc.path, doc.content)
        if reason is not None:
            log.info("skipping %s: secret file (%s)", doc.id, reason)
            return Skipped(doc.source, doc.path, SkipReason.SECRET_FILE, reason), ()
        body = self.detector.redact(doc.content)
        title = self.detector.redact(doc.title) if doc.title else None
        found = body.findings + tuple(replace(f, line=0) for f in (title.findings if title else ()))
        if not found:
            return doc, ()
        where = ", ".join(f"{f.rule} line {f.line}" if f.line else f"{f.rule} in title" for f in found[:LOGGED_FINDINGS])
        more = f" and {len(found) - LOGGED_FINDINGS} more" if len(found) > LOGGED_FINDINGS else ""
        log.info("redacted %d secret(s) in %s: %s%s", len(found), doc.id, where, more)
        return replace(doc, content=body.text, title=title.text if title else doc.title), found
