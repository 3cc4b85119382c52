"""The `cairn` command's logging: one stderr handler whose lines never carry a URL's query string."""
from __future__ import annotations

import logging
import re

# A URL's query string (absolute, or a path right after a space, quote, "(" or "="), cut from every log line
# up to the next space: whatever a query holds (quotes included) goes, and a closing quote with it.
QUERY_IN_URL = re.compile(r"""((?:\b[A-Za-z][A-Za-z0-9+.-]*://|(?<![^\s"'(=])/)[^\s?#"'<>]*)\?\S+""")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class QueryScrubber(logging.Formatter):
    """Cuts the query string off every URL in a formatted line, traceback included. Cairn's own lines
    never hold one, but a third-party line may (an HTTP client's request line, an exception naming the URL
    it fetched), and a query string can hold search text, a webhook's `?secret=` or a token parameter."""

    def format(self, record: logging.LogRecord) -> str:
        return QUERY_IN_URL.sub(r"\1?[query]", super().format(record))


# Third-party loggers whose INFO lines print whole URLs (httpx: "HTTP Request: GET https://...?...").
URL_LOGGERS = ("httpx", "httpcore")


def configure_logging(level: int) -> None:
    """The process's logging, for every `cairn` command: one stderr handler whose lines never carry a
    query string (QueryScrubber), at `level`; HTTP clients' own request lines only from WARNING. A process
    whose logging is set up already by someone else (a test harness capturing records) is left as it is."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(QueryScrubber(LOG_FORMAT))
        root.addHandler(handler)
    if any(isinstance(h.formatter, QueryScrubber) for h in root.handlers):
        root.setLevel(level)
        for name in URL_LOGGERS:
            logging.getLogger(name).setLevel(max(level, logging.WARNING))
