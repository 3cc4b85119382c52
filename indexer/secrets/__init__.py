"""Secrets never reach the index: secret files become skips, credentials in text become `[REDACTED:rule]`.

Contract: `SecretScreen.prepare(doc)` returns the redacted Document (or a Skipped for a secret file, or for
a file with a credential in its path, recorded under the redacted path) and
the findings; `SecretDetector` finds credentials in text; `RedactionLog` keeps per-document counts."""
from indexer.secrets.detector import MARKER_PATTERN, Finding, SecretDetector
from indexer.secrets.redaction_log import RedactionLog
from indexer.secrets.screen import Screened, SecretScreen

__all__ = ["MARKER_PATTERN", "Finding", "RedactionLog", "Screened", "SecretDetector", "SecretScreen"]
