"""What the `cairn` tables are made of: times people read at a glance, job durations, and tables that fit
an 80-column terminal (ids and times never wrapped; free text cut with an ellipsis instead)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from api.progress import format_seconds

RECENT = dt.timedelta(hours=24)  # within this, a time reads "3 h ago"; beyond, a date


def _parse(value: str | dt.datetime | None) -> dt.datetime | None:
    if value is None or value == "":
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)  # the catalog stores UTC


def human_time(value: str | dt.datetime | None, now: dt.datetime | None = None) -> str:
    """`just now`, `12 min ago`, `in 3 h` within a day; `2026-12-06 12:15` (local time) otherwise; `-` for none."""
    when = _parse(value)
    if when is None:
        return "-"
    now = now or dt.datetime.now(dt.UTC)
    delta = now - when
    if abs(delta) >= RECENT:
        return when.astimezone().strftime("%Y-%m-%d %H:%M")
    seconds = abs(delta.total_seconds())
    if seconds < 60:
        return "just now"
    amount = f"{int(seconds // 60)} min" if seconds < 3600 else f"{int(seconds // 3600)} h"
    return f"{amount} ago" if delta.total_seconds() > 0 else f"in {amount}"


def job_duration(job: dict, now: dt.datetime | None = None) -> str:
    """How long a job ran (or has been running): `1m20s`; `-` before it started."""
    started = _parse(job.get("started_at"))
    if started is None:
        return "-"
    ended = _parse(job.get("finished_at")) or now or dt.datetime.now(dt.UTC)
    return format_seconds(max((ended - started).total_seconds(), 0))


@dataclass(frozen=True)
class Col:
    """A table column: `fixed` ones (ids, counts, states, times) keep their width and never wrap; the
    others share what is left of the terminal's width and are cut with an ellipsis."""

    header: str
    fixed: bool = False
    right: bool = False


GAP = 2  # spaces between columns
NARROWEST = 4  # a free-text column never gets narrower than this


class CompactTable:
    """Rows first, widths after: the columns are sized to the console before rich draws them, so ids and
    times stay whole at 80 columns (rich alone would shrink every column, ids included)."""

    def __init__(self, *columns: Col) -> None:
        self.columns = columns
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: object) -> None:
        self.rows.append(tuple("-" if c is None else str(c) for c in cells))

    def widths(self, total: int) -> list[int]:
        natural = [max([cell_len(c.header), *(cell_len(r[i]) for r in self.rows)]) for i, c in enumerate(self.columns)]
        flexible = [i for i, c in enumerate(self.columns) if not c.fixed]
        room = total - GAP * (len(self.columns) - 1) - sum(w for i, w in enumerate(natural) if i not in flexible)
        widths = list(natural)
        # water-filling: the narrow free-text columns keep their width, the wide ones share the rest
        for n, i in enumerate(sorted(flexible, key=lambda i: natural[i])):
            share = max(room // (len(flexible) - n), NARROWEST)
            widths[i] = min(natural[i], share)
            room -= widths[i]
        return widths

    def render(self, width: int) -> Table:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, GAP - 1, 0, 0),
                      header_style="bold", expand=False)
        for col, w in zip(self.columns, self.widths(width), strict=True):
            table.add_column(col.header, width=w, no_wrap=True, overflow="fold" if col.fixed else "ellipsis",
                             justify="right" if col.right else "left")
        for row in self.rows:
            table.add_row(*(Text(cell) for cell in row))
        return table

    def print(self, console: Console) -> None:
        console.print(self.render(console.width))
