"""`locate` on the golden set (tests/retrieval/golden/): every bug report's files within the bounds `search` must
meet, an MRR no lower than search's on the same index, evidence for every file, and a time budget no step
starts after (a clock the test moves)."""
from __future__ import annotations

import pytest
from test_golden_ranking import READER, SOURCE, golden_index, golden_queries, ranked_files  # noqa: F401

from indexer.models import Principal
from retrieval.locate import Locator, Weights
from retrieval.permissions import Scope
from retrieval.query_analysis import QueryError
from retrieval.search import SearchResult
from retrieval.searcher import build_searcher

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def searcher(golden_index):  # noqa: F811 - the golden index fixture, imported
    made = build_searcher(golden_index)
    yield made
    made.close()


def reciprocal(files: list[str], expected: tuple[str, ...]) -> float:
    return max((1 / (files.index(p) + 1) for p in expected if p in files), default=0.0)


def test_locate_meets_the_golden_bounds_and_search_s_mrr(searcher):
    locator = Locator.over(searcher, None)
    late, mine, theirs = [], [], []
    for q in golden_queries():
        found = locator.locate(q.query, READER, Scope(sources=(SOURCE,)), limit=20, budget=30.0)
        files = [f.path for f in found.files]
        assert found.files and all(f.evidence and f.start_line <= f.end_line for f in found.files), q.query
        assert not found.truncated
        ranks = {p: files.index(p) + 1 if p in files else None for p in q.expected_paths}
        if any(r is None or r > q.max_rank for r in ranks.values()):
            late.append(f"{q.query.splitlines()[0]!r}: {ranks} (bound {q.max_rank}), top: {files[:5]}")
        mine.append(reciprocal(files, q.expected_paths))
        theirs.append(reciprocal(ranked_files(searcher, q.query), q.expected_paths))
    assert not late, "\n".join(late)
    assert sum(mine) >= sum(theirs)


class SlowSearcher:
    """The real searcher, but every search takes `seconds` on the test's clock."""

    def __init__(self, inner, clock: list[float], seconds: float) -> None:
        self.inner, self.clock, self.seconds = inner, clock, seconds

    def search(self, text: str, principal: Principal | None, scope: Scope = Scope(), limit: int = 10) -> SearchResult:
        self.clock[0] += self.seconds
        return self.inner.search(text, principal, scope, limit=limit)


@pytest.mark.parametrize("budget, steps", [
    (2.0, ["search"]),  # both searches (1.5 s each) start within the budget; nothing after them does
    (1.0, ["search"]),  # the second search would start with 0 s left: skipped
    (10.0, ["search", "frames", "errors", "definitions", "commits", "tickets", "references"]),
])
def test_no_step_starts_after_the_budget(searcher, budget, steps):
    now = [0.0]
    slow = SlowSearcher(searcher, now, 1.5)
    locator = Locator(slow, searcher.catalog, searcher.fulltext, searcher.stale, None, clock=lambda: now[0])
    query = next(q for q in golden_queries() if "Traceback" in q.query).query
    found = locator.locate(query, READER, Scope(sources=(SOURCE,)), limit=5, budget=budget)
    assert found.steps == steps and found.truncated is (steps != ["search", "frames", "errors", "definitions",
                                                                  "commits", "tickets", "references"])
    assert now[0] == (1.5 if budget == 1.0 else 3.0)  # how many searches ran
    assert found.files  # the search's files are still answered
    with pytest.raises(QueryError):
        locator.locate(query, READER, budget=0)


TEMPLATE = ("<!-- This comments are hidden when you submit the issue, so you do not need to remove them!\n"
            "Please read README.md and docs/user/advanced.rst before reporting, and search the existing issues:\n"
            "tinyhttp/sessions.py tinyhttp/cookies.py questions belong on the forum. -->\n")


def test_an_issue_template_s_hidden_comment_changes_no_ranking(searcher):
    """A bug report pasted with its template's HTML comment (hidden on the issue page, naming files) ranks its
    files exactly as the report without it, in `locate` (with the same evidence) and in `search`."""
    locator = Locator.over(searcher, None)
    scope = Scope(sources=(SOURCE,))
    for q in golden_queries()[:6]:
        head, _, body = q.query.partition("\n")
        templated = f"{head}\n{TEMPLATE}{body}\n<!-- Thanks for contributing! CONTRIBUTING.md -->"
        plain = locator.locate(q.query, READER, scope, limit=10, budget=30.0)
        found = locator.locate(templated, READER, scope, limit=10, budget=30.0)
        assert [(f.path, f.evidence) for f in found.files] == [(f.path, f.evidence) for f in plain.files], head
        assert not [e for f in found.files for e in f.evidence if e.startswith("path ")], head
        assert ranked_files(searcher, templated) == ranked_files(searcher, q.query), head


CALLERS = ('Traceback (most recent call last):\n'
           '  File "/srv/app/.venv/lib/python3.12/site-packages/tinyhttp/api.py", line 40, in get\n'
           '    return request("get", url, params=params, **kwargs)\n'
           '  File "/srv/app/.venv/lib/python3.12/site-packages/tinyhttp/sessions.py", line 140, in request\n'
           '    resp = self.send(prep, **send_kwargs)\n'
           '  File "/srv/app/.venv/lib/python3.12/site-packages/tinyhttp/adapters.py", line 101, in send\n'
           '    conn = self.get_connection(request.url, proxies)\n')
RAISED = [  # (report, the file the error points at, the evidence it must show)
    ("Requests fail when a header value holds a new line\n\nI build headers from a config file:\n\n```\n" + CALLERS
     + "ValueError: header values must not contain line breaks\n```\n", "tinyhttp/_internal_utils.py",
     "holds “header values must not contain line breaks” of the ValueError in the text"),
    ("Session crashes when I pass my limiter settings\n\n```\n" + CALLERS
     + "TypeError: RateLimiter.__init__() got an unexpected keyword argument 'burst'\n```\n", "tinyhttp/ratelimit.py",
     "defines `RateLimiter` named by the TypeError in the text"),
]


@pytest.mark.parametrize("report, path, why", RAISED)
def test_the_quoted_error_points_at_the_code_raising_it_not_only_at_its_callers(searcher, report, path, why):
    """A traceback passes through the callers of the faulty code; the exception line names the faulty code (its
    message's fixed words are in the `raise`, its class is defined there): locate ranks that file among the first
    three with the evidence saying so. Without that step (weight 0) the file falls out of the first three, so the
    test tells the rule apart."""
    scope = Scope(sources=(SOURCE,))
    found = Locator.over(searcher, None).locate(report, READER, scope, limit=10, budget=30.0)
    files = [f.path for f in found.files]
    assert path in files[:3], files
    assert any(e.startswith(why) for e in found.files[files.index(path)].evidence), found.files[files.index(path)]
    assert "errors" in found.steps
    blind = Locator(searcher, searcher.catalog, searcher.fulltext, searcher.stale, None, Weights(raised=0.0))
    without = [f.path for f in blind.locate(report, READER, scope, limit=10, budget=30.0).files]
    assert path not in without[:3], without


def test_a_name_the_error_gives_is_looked_up_even_when_it_spells_a_stop_word(searcher, monkeypatch):
    """`TypeError: RST.__init__() got …` names astropy's class `RST`, and `rst` is a stop word of query analysis (a
    file extension in prose): a name read from the error's code syntax is looked up all the same."""
    import retrieval.mentions

    monkeypatch.setattr(retrieval.mentions, "STOP_WORDS", retrieval.mentions.STOP_WORDS | {"ratelimiter"})
    report, path, why = RAISED[1]
    found = Locator.over(searcher, None).locate(report, READER, Scope(sources=(SOURCE,)), limit=10, budget=30.0)
    assert any(e.startswith(why) for f in found.files if f.path == path for e in f.evidence)


def test_the_error_step_keeps_to_the_kinds_the_caller_asked_for(searcher):
    """A raise is looked for in code only when code is in the scope: asked for docs, no code file comes back
    through the error's message."""
    report, _, why = RAISED[0]
    found = Locator.over(searcher, None).locate(report, READER, Scope(sources=(SOURCE,), kinds=("doc",)), limit=10,
                                                budget=30.0)
    assert "errors" in found.steps and found.files
    assert not [f.path for f in found.files if any(e.startswith(why) for e in f.evidence)]
    assert {f.path.rsplit(".", 1)[-1] for f in found.files} <= {"md", "rst"}
