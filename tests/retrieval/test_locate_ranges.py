"""The line range `locate` shows for a file: its strongest evidence's range, cut to MAX_SHOWN_LINES from its start."""
from __future__ import annotations

from datetime import UTC, datetime

from indexer.catalog.schema import DocumentRecord
from retrieval.locate import MAX_SHOWN_LINES, _File, located


def document(lines: int) -> DocumentRecord:
    content = "\n".join(f"line {n}" for n in range(1, lines + 1))
    return DocumentRecord(id="d1", source="repo", path="pkg/table.py", title="table.py", kind="code",
                          language="python", version="v1", access_digest="", url="", content=content,
                          n_chunks=1, state="ok", indexed_at=datetime.now(UTC))


def test_a_long_definition_is_shown_from_its_start_up_to_the_limit():
    entry = _File("d1", "repo", "pkg/table.py")
    entry.add("definition", 1.0, "defines `Table` named in the text", 100, 3100, "Table")
    shown = located(entry, document(4000))
    assert (shown.start_line, shown.end_line) == (100, 100 + MAX_SHOWN_LINES - 1)
    assert shown.content.splitlines()[0] == "line 100"
    assert shown.content.splitlines()[-1] == f"line {100 + MAX_SHOWN_LINES - 1}"
    assert shown.symbol == "Table"


def test_a_short_range_is_shown_whole_and_never_past_the_end_of_the_file():
    entry = _File("d1", "repo", "pkg/table.py")
    entry.add("definition", 1.0, "defines `read` named in the text", 10, 30, "read")
    assert (located(entry, document(200)).start_line, located(entry, document(200)).end_line) == (10, 30)
    entry = _File("d1", "repo", "pkg/table.py")
    entry.add("frame", 1.0, "traceback frame", 190, 230)
    shown = located(entry, document(200))
    assert (shown.start_line, shown.end_line) == (190, 200)
    assert shown.content.splitlines()[-1] == "line 200"
