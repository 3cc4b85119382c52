"""The web UI's main flows in headless Debian chromium on one real server: search (facets, paging, keys,
multi-line queries, recent searches), the document view (anchors, rendered Markdown), the admin console
(add, edit, remove a source, cancel a job; add a Jira source against a fake Jira) and what a non-admin may
not see. Every page is shot at 1280
and 390 px into test-output/screenshots/ and no request may leave the machine (web_harness)."""
from __future__ import annotations

import re
import shutil

import httpx
import pytest
from playwright.sync_api import Page, expect
from web_harness import (
    CHROMIUM,
    FakeJira,
    build_corpus,
    git_repo,
    serve,
    shoot,
    sign_in,
    token,
    watched_page,
)

from api.app import create_app
from api.web_search import recent_key
from indexer.models import Access, Document, Principal

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium (make browser)")

LEDGERS = 26  # files in source `ledger` that match "ledger balance": two pages of results

GUIDE_MD = """# Deploy guide

How we ship the **billing** service. <script>window.pwned = 1</script>

| step | who |
|------|-----|
| build | CI |
| canary | ops |

```python
def ship(version):
    return deploy(version, canary=True)
```

- [dangerous](javascript:window.pwned=2)
- [runbook](https://wiki.example.com/runbook)

![diagram](https://cdn.example.com/diagram.png)

## Rollback

Roll back with `cairn rollback`; the parent teardown apparently runs last.
"""

ISSUE_MD = """Refunds fail for **partial** payments.

Steps:

1. open an invoice
2. refund half of it

<img src=x onerror="window.pwned=3">
"""

TEARDOWN_PY = '''class Parent:
    """An apparent parent: its teardown runs last."""

    def tearDown(self):
        self.parent_teardown()
'''


def ledger_py(n: int) -> str:
    return f'def ledger_balance_{n}(ledger):\n    """Balance of ledger {n}."""\n    return sum(ledger.entries)\n'


def add_documents(services, source: str, access: list[str], docs: list[Document]) -> None:
    if services.catalog.get_source(source) is None:
        services.catalog.upsert_source(source, "git", {"location": f"https://git.example.com/{source}.git"}, access)
    services.pipeline.apply_lexical(docs)
    services.pipeline.embed_pending(source)


def doc(source: str, path: str, content: str, access: str, **kw) -> Document:
    return Document(id=f"{source}:{path}", source=source, path=path, content=content, version="1",
                    access=Access.of(access), **kw)


@pytest.fixture(scope="module")
def site(tmp_path_factory, embedder):
    """The API tests' corpus (eng, web: group eng; ops: group ops) plus `notes` (group eng: a Markdown
    guide, an issue, a Python file), `ledger` (group eng: LEDGERS files) and an rst page in ops."""
    root = tmp_path_factory.mktemp("ui")
    settings, services = build_corpus(root, embedder)
    add_documents(services, "notes", ["group:eng"], [
        doc("notes", "docs/deploy.md", GUIDE_MD, "group:eng", kind="doc", language="markdown"),
        doc("notes", "BILL-7", ISSUE_MD, "group:eng", kind="issue", language="markdown", title="Refunds fail"),
        doc("notes", "tests/teardown.py", TEARDOWN_PY, "group:eng", language="python")])
    add_documents(services, "ledger", ["group:eng"], [
        doc("ledger", f"books/ledger_{n:02}.py", ledger_py(n), "group:eng", language="python") for n in range(LEDGERS)])
    add_documents(services, "ops", ["group:ops"], [
        doc("ops", "runbooks/canary.rst", "Canary rollout\n==============\n\nWatch the canary ledger.\n", "group:ops",
            kind="doc", language="rst")])
    app = create_app(settings, services=services)
    tokens = {"eng": token(services, "alice", ["eng"]), "ops": token(services, "bob", ["ops"]),
              "admin": token(services, "root", [], admin=True)}
    with serve(app) as base:
        yield base, services, tokens, root
    services.close()


def search(page: Page, query: str) -> None:
    page.fill("#q", query)
    page.keyboard.press("Enter") if page.evaluate("document.activeElement.id") == "q" else page.click("#search-button")
    expect(page.locator("#status")).to_contain_text(f"for “{query.split(chr(10))[0]}")


def facet_values(page: Page, field: str) -> list[str]:
    return page.locator(f'#facets .facet[data-facet="{field}"]').evaluate_all("bs => bs.map(b => b.dataset.value)")


def test_search_facets_paging_keys_and_recent_searches(site, browser):
    base, _services, tokens, _root = site
    with watched_page(browser, viewport={"width": 1280, "height": 900}) as page:
        sign_in(page, base, tokens["eng"])
        # the empty state: the caller's sources (counted by the index), examples, no recent searches yet
        expect(page.locator("#my-sources li")).to_have_count(4)
        expect(page.locator("#my-sources")).to_contain_text("ledger")
        expect(page.locator("#examples .example").first).to_be_visible()
        expect(page.locator("#no-recent")).to_be_visible()
        shoot(page, "search-empty")

        search(page, "ledger balance")
        hits = page.locator("#results .hit")
        expect(hits).to_have_count(20)
        expect(page.locator("#status")).to_contain_text("Results 1–20 for “ledger balance”")
        first = hits.first
        expect(first.locator(".source")).to_have_text("ledger")
        expect(first.locator(".lines")).to_have_text(re.compile(r"^L\d+(–\d+)?$"))
        expect(first.locator(".sline .ln").first).to_have_text(re.compile(r"^\d+$"))
        expect(first.locator(".chip")).to_contain_text(["python"])
        # facets: counted by the index, only values the caller may read
        assert facet_values(page, "source")[0] == "ledger"  # most matching chunks first
        assert "ops" not in facet_values(page, "source") and "rst" not in facet_values(page, "language")
        expect(page.locator('.facet[data-facet="source"][data-value="ledger"] .count')).to_have_text(str(LEDGERS))
        shoot(page, "search-results")

        page.click("#next-page")  # paging
        expect(page.locator("#status")).to_contain_text(re.compile(r"Results 21–(\d+) of \1 for"))
        expect(page.locator("#next-page")).to_be_disabled()
        assert "page=2" in page.url
        page.click("#prev-page")
        expect(page.locator("#status")).to_contain_text("Results 1–20")

        search(page, "refund payment")  # a facet filters; clicking it again clears
        assert {"code", "issue"} <= set(facet_values(page, "kind"))
        page.click('.facet[data-facet="kind"][data-value="issue"]')
        expect(page.locator("#results .hit .open")).to_have_text(["Refunds fail"])
        expect(page.locator("#status")).to_have_text("1 result for “refund payment”")
        expect(page.locator('.facet[data-facet="kind"][data-value="issue"]')).to_have_attribute("aria-pressed", "true")
        assert "kind=issue" in page.url
        shoot(page, "search-facet")
        page.click('.facet[data-facet="kind"][data-value="issue"]')
        expect(page.locator("#results .hit .source")).to_contain_text(["web"])

        search(page, "parent teardown")  # whole terms only: not `apparent`, not a stop-word
        expect(page.locator("#results .hit").first).to_be_visible()
        marked = {m.lower() for m in page.locator("#results mark").all_inner_texts()}
        assert marked and marked <= {"parent", "teardown"}, marked
        texts = page.locator("#results .sline code").all_inner_texts()
        assert any("apparent" in t for t in texts)

        page.locator("body").focus()  # keyboard: / focuses the box, ↓ and j move, k goes back, Enter opens
        page.keyboard.press("/")
        expect(page.locator("#q")).to_be_focused()
        page.keyboard.press("ArrowDown")
        expect(page.locator("#results .hit").first).to_be_focused()
        page.keyboard.press("j")
        expect(page.locator("#results .hit").nth(1)).to_be_focused()
        page.keyboard.press("k")
        expect(page.locator("#results .hit").first).to_be_focused()
        href = page.locator("#results .hit").first.get_attribute("data-href")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/documents/.+#L\d+"))
        start, end = (int(x) for x in re.search(r"#L(\d+)(?:-L(\d+))?$", href).groups(default="0"))
        end = end or start
        expect(page.locator(".code .hit-line")).to_have_count(end - start + 1)
        expect(page.locator(f"#L{start}")).to_have_class(re.compile("hit-line"))
        expect(page.locator(".code mark").first).to_be_visible()

        page.goto(base + "/")  # a pasted traceback keeps its lines; Shift+Enter adds one, Enter searches
        trace = 'Traceback (most recent call last):\n  File "pkg/retry.py", line 30, in retry_with_backoff'
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page.evaluate("text => navigator.clipboard.writeText(text)", trace)
        page.focus("#q")
        page.keyboard.press("Control+V")  # a real paste, as from a terminal
        assert page.input_value("#q") == trace
        page.keyboard.press("Control+End")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("ConnectionError: refused")
        assert page.input_value("#q") == trace + "\nConnectionError: refused"
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("for “Traceback (most recent call last):…”")
        assert page.input_value("#q").count("\n") == 2
        assert (page.locator("#q").bounding_box() or {})["height"] > 50  # the box grew to show the lines
        expect(page.locator("#results .hit").first).to_contain_text("retry")
        shoot(page, "search-traceback")

        page.goto(base + "/")  # recent searches: this user's, newest first
        expect(page.locator("#recent .recent-search").first).to_have_text("Traceback (most recent call last): …")
        expect(page.locator("#recent")).to_contain_text("ledger balance")
        shoot(page, "search-recent")


def test_document_view_anchors_and_markdown(site, browser):
    base, _services, tokens, _root = site
    with watched_page(browser, viewport={"width": 1280, "height": 900}) as page:
        sign_in(page, base, tokens["eng"])
        page.goto(base + "/documents/notes:docs/deploy.md#L5-L8")  # rendered; the anchor marks the table
        expect(page.locator(".markdown h1")).to_have_text("Deploy guide")
        expect(page.locator(".markdown table td").first).to_have_text("build")
        expect(page.locator(".markdown table")).to_have_class(re.compile("hit-line"))
        expect(page.locator("#range-note")).to_have_text("Lines 5–8 are marked.")
        expect(page.locator(".markdown pre code .k").first).to_have_text("def")  # fenced code highlighted
        # safe: the script is text, the javascript: link is not a link, the image is a link (nothing fetched)
        expect(page.locator(".markdown")).to_contain_text("<script>window.pwned = 1</script>")
        assert page.locator(".markdown script").count() == 0
        assert page.locator('.markdown a[href^="javascript"]').count() == 0
        assert page.locator(".markdown img").count() == 0
        expect(page.locator(".markdown a.image-link")).to_have_text("[image: diagram]")
        assert page.evaluate("window.pwned") is None
        shoot(page, "document-markdown")

        page.click('.view-link[data-view="source"]')  # the same anchor in the source view
        page.wait_for_url(re.compile(r"view=source.*#L5-L8$"))
        expect(page.locator(".code .hit-line")).to_have_count(4)
        page.click("#L12 a.ln")  # a line number marks that line; shift-click extends to a range
        page.click("#L14 a.ln", modifiers=["Shift"])
        assert page.url.endswith("#L12-L14")
        expect(page.locator(".code .hit-line")).to_have_count(3)
        shoot(page, "document-source")

        page.goto(base + "/documents/notes:BILL-7")  # a ticket is rendered, its HTML escaped
        expect(page.locator(".markdown ol li")).to_have_count(2)
        expect(page.locator(".markdown strong")).to_have_text("partial")
        assert page.locator(".markdown img").count() == 0 and page.evaluate("window.pwned") is None
        shoot(page, "document-issue")

        page.goto(base + "/documents/eng:pkg/retry.py#L6-L10")  # code: highlighted, numbered, marked
        expect(page.locator(".code .hit-line")).to_have_count(5)
        expect(page.locator("#L6 .nf")).to_have_text("retry_with_backoff")
        shoot(page, "document-code")


def test_a_non_admin_sees_nothing_of_a_source_they_cannot_read(site, browser):
    base, _services, tokens, _root = site
    alice = Principal(user="alice", groups=frozenset({"eng"}))
    with watched_page(browser, allow=("404",), viewport={"width": 1280, "height": 900}) as page:
        sign_in(page, base, tokens["eng"])
        # a recent search of ops kept in this browser (say alice could read ops once): never shown
        page.evaluate("([key, entries]) => localStorage.setItem(`cairn.recent.${key}`, JSON.stringify(entries))",
                      [recent_key(alice), [{"q": "canary secret", "source": "ops"}, {"q": "retry", "source": "eng"}]])
        page.goto(base + "/")
        expect(page.locator("#recent .recent-search")).to_have_text(["retry"])
        expect(page.locator('#my-sources li[data-source="ops"]')).to_have_count(0)
        search(page, "canary rollout ledger")
        assert "ops" not in facet_values(page, "source") and "rst" not in facet_values(page, "language")
        assert not [h for h in page.locator("#results .hit .source").all_inner_texts() if h == "ops"]
        page.goto(base + "/?q=canary&source=ops")  # asking for the source by name shows nothing of it
        expect(page.locator("#status")).to_contain_text("for “canary”")
        expect(page.locator("#results .hit")).to_have_count(0)
        assert "ops" not in facet_values(page, "source")
        expect(page.locator(".active-filter")).to_have_text(["source: ops ×"])  # only as the caller typed it
        for path in ("/documents/ops:deploy/rollout.py", "/documents/ops:runbooks/canary.rst"):
            assert page.goto(base + path).status == 404
            expect(page.locator("h1")).to_have_text("Not found")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['ops']}"}, timeout=10) as api:
        found = api.post("/v1/search", json={"query": "canary rollout", "sources": ["ops"]}).json()["hits"]
        assert {h["source"] for h in found} == {"ops"}  # the data is there, for its readers
    with watched_page(browser) as page:  # and an admin's facets list it, with the rst page
        sign_in(page, base, tokens["admin"])
        search(page, "canary rollout ledger")
        assert "ops" in facet_values(page, "source") and "rst" in facet_values(page, "language")


def test_admin_adds_edits_and_removes_a_source_and_cancels_a_job(site, browser):
    base, services, tokens, root = site
    repo = git_repo(root / "handbook", {"README.md": "# Handbook\n\nOn-call handbook for the payments team.\n"})
    waiting = services.catalog.create_job(None, "eng", "index")  # queued behind nothing that runs it
    with watched_page(browser, allow=("confirm",), viewport={"width": 1280, "height": 1000}) as page:
        sign_in(page, base, tokens["admin"], "/admin")
        expect(page.locator('.readers[data-source="eng"]')).to_have_text("group:eng")
        job = page.locator(f'#jobs tr[data-job="{waiting}"]')
        expect(job).to_have_attribute("data-state", "queued")
        expect(job).to_contain_text("waiting")
        job.get_by_role("button", name="Cancel index job of eng").click()
        expect(job).to_have_attribute("data-state", "cancelling")
        expect(page.locator("#admin-status")).to_contain_text(f"Cancelling index job of eng ({waiting})")
        assert services.catalog.get_job(waiting).state == "cancelling"

        page.click("#add-source-open")
        page.fill("#add-name", "handbook")
        page.fill("#add-location", str(repo))
        page.fill("#add-access", "group:eng, group:support")
        page.fill("#add-interval", "2h")
        shoot(page, "admin-add-source")
        page.click("#add-save")
        expect(page.locator("#admin-status")).to_contain_text("handbook added · indexing (job ")
        row = page.locator('#sources tr[data-source="handbook"]')
        expect(row.locator(".readers")).to_have_text("group:eng, group:support")
        added = re.search(r"job ([0-9a-f-]{36})", page.locator("#admin-status").inner_text()).group(1)
        done = page.locator(f'#jobs tr[data-job="{added}"]')
        expect(done).to_have_attribute("data-state", "succeeded")
        expect(done.locator(".duration")).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
        expect(row).to_contain_text("idle")
        shoot(page, "admin-console")

        page.get_by_role("button", name="Edit access, ref and schedule of handbook").click()
        expect(page.locator("#edit-interval")).to_have_value("7200s")
        page.fill("#edit-access", "group:support")
        page.fill("#edit-interval", "30m")
        page.click("#edit-save")
        expect(page.locator("#admin-status")).to_contain_text("handbook: changed access, interval")
        expect(row.locator(".readers")).to_have_text("group:support")

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Remove handbook").click()
        expect(page.locator("#admin-status")).to_contain_text("handbook removed")
        expect(row).to_have_count(0)
    assert services.catalog.get_source("handbook") is None


def fill_jira_source(page: Page, url: str, jql: str = "") -> None:
    page.click("#add-source-open")
    page.select_option("#add-kind", "jira")
    page.fill("#add-name", "tickets")
    page.fill("#add-url", url)
    page.fill("#add-jira-projects", "PAY")
    page.fill("#add-jql", jql)
    page.fill("#add-access", "group:eng")
    page.fill("#add-username", "bot@example.com")
    page.fill("#add-token-env", "UI_JIRA_TOKEN")
    page.fill("#add-interval", "1h")


def test_admin_adds_a_jira_source_and_sees_who_may_read_it(site, browser, monkeypatch):
    base, services, tokens, _root = site
    jira = FakeJira(cloud=False)  # a Data Center by its host (not *.atlassian.net)
    jira.add_issue("PAY-7", "Checkout times out for large carts", "Checkout gives up after 30 seconds.")
    jira.add_issue("PAY-8", "Invoice PDF has the wrong logo", "The logo on invoices is outdated.")
    jira.grant("PAY", {"type": "anyone"})
    monkeypatch.setenv("UI_JIRA_TOKEN", jira.token)  # the server reads the reference at sync time
    jira.server.start()
    try:
        with watched_page(browser, allow=("status of 422",), viewport={"width": 1280, "height": 1000}) as page:
            sign_in(page, base, tokens["admin"], "/admin")
            page.click("#add-source-open")  # git by default: a repository, no URL
            expect(page.locator("#add-location")).to_be_visible()
            expect(page.locator("#add-url")).to_be_hidden()
            for kind, shown, hidden in (("gitlab", "#add-group", "#add-jira-projects"),
                                        ("confluence", "#add-spaces", "#add-ref")):
                page.select_option("#add-kind", kind)  # each kind shows its own fields
                expect(page.locator(shown)).to_be_visible()
                expect(page.locator(hidden)).to_be_hidden()
                expect(page.locator("#add-location")).to_be_hidden()
                shoot(page, f"admin-add-{kind}-source")
            page.click("#add-cancel")
            fill_jira_source(page, jira.server.url, jql="project = PAY ORDER BY created")
            expect(page.locator("#add-location")).to_be_hidden()  # the fields of a Jira source only
            expect(page.locator("#add-ref")).to_be_hidden()
            expect(page.locator("#add-spaces")).to_be_hidden()
            expect(page.locator("#add-token-file")).to_be_visible()
            shoot(page, "admin-add-jira-source")
            page.click("#add-save")  # refused by the server, field by field, nothing stored
            expect(page.locator("#admin-status")).to_contain_text(
                "tickets not added: 422 jira: jql must not contain ORDER BY")
            assert services.catalog.get_source("tickets") is None

            fill_jira_source(page, jira.server.url)
            page.click("#add-save")
            expect(page.locator("#admin-status")).to_contain_text("tickets added · indexing (job ")
            row = page.locator('#sources tr[data-source="tickets"]')
            expect(row.locator(".readers")).to_have_text("per item, from jira (default: group:eng)")
            expect(row.locator(".source-kind")).to_have_text("jira")
            added = re.search(r"job ([0-9a-f-]{36})", page.locator("#admin-status").inner_text()).group(1)
            expect(page.locator(f'#jobs tr[data-job="{added}"]')).to_have_attribute("data-state", "succeeded")
            expect(row).to_contain_text("idle")
            shoot(page, "admin-jira-source")
            page.get_by_role("button", name="Edit access, ref and schedule of tickets").click()
            expect(page.locator("#edit-interval")).to_have_value("3600s")
            expect(page.locator("#edit-ref")).to_be_hidden()  # a Jira source has no ref
            page.click("#edit-cancel")
        assert set(services.catalog.document_versions("tickets")) == {"tickets:PAY-7", "tickets:PAY-8"}
        stored = services.catalog.get_source("tickets")
        assert stored.config["token_env"] == "UI_JIRA_TOKEN" and jira.token not in str(stored.config)
        assert jira.server.requests("/rest/api/2/search")  # read from the fake Jira, with the token
    finally:
        jira.server.stop()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=60) as api:
            api.delete("/v1/sources/tickets")  # the module's other tests count eng's sources
