"""Screens every document before it is chunked: secret files (and files with a credential in their path)
become skips, the rest is indexed redacted.

The pipeline calls `SecretScreen.screen` on each batch, whatever the connector, so tantivy, the vectors,
the embedding cache and the catalog's stored text only ever see redacted text. The document keeps the
source's version, so an unchanged file is not read again. Logs name the rule, document and line only."""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from indexer.models import Document, Skipped, SkipReason
from indexer.secrets.detector import Finding, SecretDetector
from indexer.secrets.files import secret_file_reason

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
        # The policy as given, so a worker process can build the same screen (the detector's rules
        # hold functions, so the screen itself does not travel).
        self.config: tuple[tuple[str, ...], tuple[str, ...]] = (tuple(allow), tuple(allow_paths))

    def exempt(self, path: str) -> bool:
        path = path.replace("\\", "/").lstrip("/")
        return any(p.match(path) for p in self.allow_paths)

    def screen(self, docs: Sequence[Document], report: bool = True) -> Screened:
        """Screen a batch. `report=False` logs nothing: the caller logs the result with `report`
        (a batch screened in a worker process is logged by the process that writes it)."""
        out = Screened([], [])
        for doc in docs:
            result, found = self.check(doc)
            if isinstance(result, Skipped):
                out.skipped.append(result)
                out.skipped_ids.append(doc.id)
                continue
            out.documents.append(result)
            if found:
                out.findings[doc.id] = found
        if report:
            self.report(out)
        return out

    def prepare(self, doc: Document) -> tuple[Document | Skipped, tuple[Finding, ...]]:
        """The document to index (redacted, same version) with its findings, or why it is skipped; logged."""
        result, found = self.check(doc)
        if isinstance(result, Skipped):
            _log_skip(doc.id, result)
        elif found:
            log_findings(doc.id, found)
        return result, found

    def check(self, doc: Document) -> tuple[Document | Skipped, tuple[Finding, ...]]:
        """`prepare` without logging."""
        if self.exempt(doc.path):
            return doc, ()
        try:
            return self._check(doc)
        except Exception as exc:  # noqa: BLE001 - fail closed: a file we cannot check is not indexed
            return Skipped(doc.source, doc.path, SkipReason.SECRET_FILE,
                           f"{SCAN_FAILED} ({type(exc).__name__}); not indexed"), ()

    def safe_path(self, path: str) -> str:
        """The path with any credential in it redacted: what a skip or failure record may keep."""
        return self.detector.redact(path).text

    def _check(self, doc: Document) -> tuple[Document | Skipped, tuple[Finding, ...]]:
        in_path = self.detector.findings(doc.path)
        if in_path:
            # A token in a file name would be in the document's id, path, title, chunk headers and every
            # store's keys: the file is not indexed at all, and its record names only the redacted path.
            rules = ", ".join(sorted({f.rule for f in in_path}))
            return Skipped(doc.source, self.safe_path(doc.path), SkipReason.SECRET_PATH,
                           f"a credential in the path ({rules}); not indexed"), ()
        reason = secret_file_reason(doc.path, doc.content)
        if reason is not None:
            return Skipped(doc.source, doc.path, SkipReason.SECRET_FILE, reason), ()
        body = self.detector.redact(doc.content)
        title = self.detector.redact(doc.title) if doc.title else None
        found = body.findings + tuple(replace(f, line=0) for f in (title.findings if title else ()))
        if not found:
            return doc, ()
        return replace(doc, content=body.text, title=title.text if title else doc.title), found

    @staticmethod
    def report(screened: Screened) -> None:
        """Log what a screen did: secret files skipped, and per document the rules and lines redacted."""
        for doc_id, skip in zip(screened.skipped_ids, screened.skipped, strict=True):
            _log_skip(doc_id, skip)
        for doc_id, found in screened.findings.items():
            log_findings(doc_id, found)


SCAN_FAILED = "secret scan failed"


def _log_skip(doc_id: str, skip: Skipped) -> None:
    if skip.reason == SkipReason.SECRET_PATH:  # the id holds the credential: name the redacted path only
        log.info("skipping %s:%s: %s", skip.source, skip.path, skip.detail)
    elif skip.detail.startswith(SCAN_FAILED):
        log.warning("%s of %s: %s", SCAN_FAILED, doc_id, skip.detail.removeprefix(SCAN_FAILED).strip())
    else:
        log.info("skipping %s: secret file (%s)", doc_id, skip.detail)


def log_findings(doc_id: str, found: Sequence[Finding]) -> None:
    """One line per document: how many secrets, then each rule and line. Never a value."""
    where = ", ".join(f"{f.rule} line {f.line}" if f.line else f"{f.rule} in title" for f in found[:LOGGED_FINDINGS])
    more = f" and {len(found) - LOGGED_FINDINGS} more" if len(found) > LOGGED_FINDINGS else ""
    log.info("redacted %d secret(s) in %s: %s%s", len(found), doc_id, where, more)
