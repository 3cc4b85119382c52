"""The web UI end to end: a real server on a real index, driven by headless Debian chromium."""
from __future__ import annotations

import datetime as dt
import re
import shutil

import httpx
import pytest
from playwright.sync_api import expect
from web_harness import (
    CHROMIUM,
    SCREENSHOTS,
    WEB_URL,
    build_corpus,
    serve,
    sign_in,
    token,
    watched_page,
)

from api.app import create_app
from api.web import _eta_seconds
from indexer.catalog.schema import JobRecord
from indexer.models import Skipped, SkipReason, SyncFailure

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium (make browser)")


@pytest.fixture(scope="module")
def site(tmp_path_factory, embedder):
    """The API tests' corpus (eng: pkg/retry.py, billing/invoice.py; ops: deploy/rollout.py; web: a GitLab
    document) served by uvicorn, with tokens for an eng user, an ops user and an admin."""
    settings, services = build_corpus(tmp_path_factory.mktemp("web"), embedder)
    services.catalog.record_failure(SyncFailure("ops", "deploy/broken.yaml", "yaml: mapping values not allowed"))
    services.catalog.record_skipped(Skipped("ops", "deploy/vendor.min.js", SkipReason.MINIFIED, "1 line"))
    app = create_app(settings, services=services)
    tokens = {"eng": token(services, "alice", ["eng"]), "ops": token(services, "bob", ["ops"]),
              "admin": token(services, "root", [], admin=True)}
    with serve(app) as base:
        yield app, base, tokens
    services.close()


def search(page, query: str) -> None:
    page.fill("#q", query)
    page.click("#search-button")
    expect(page.locator("#status")).to_contain_text(f"for “{query}”")


def hit_paths(page) -> list[str]:
    return [h.get_attribute("data-href") for h in page.locator("#results .hit").all()]


def test_sign_in_search_filter_open_and_feedback(site, browser):
    app, base, tokens = site
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with watched_page(browser, viewport={"width": 1200, "height": 900}) as page:
        page.goto(base + "/?q=backoff")
        page.wait_for_url(re.compile(r"/signin\?next="))
        page.fill("#token", tokens["eng"])
        page.click("#signin-button")
        page.wait_for_url(base + "/?q=backoff")  # back where the user was going, query kept
        cookie = next(c for c in page.context.cookies() if c["name"] == "cairn_session")
        # Lax: a sign-in through the IdP comes back by a cross-site redirect (cookie writes need X-Cairn-UI)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert tokens["eng"] not in cookie["value"]  # a server-side session's id, never the token
        assert tokens["eng"] not in page.evaluate("document.cookie + JSON.stringify(localStorage)")

        search(page, "retry with backoff")
        first = page.locator("#results .hit").first
        expect(first.locator(".open")).to_contain_text("pkg/retry.py")
        expect(first.locator(".lines")).to_contain_text(re.compile(r"L\d+"))
        expect(first.locator(".snippet mark").first).to_be_visible()
        expect(first.locator(".snippet span.k").first).to_be_visible()  # pygments token classes
        assert "q=retry+with+backoff" in page.url
        page.screenshot(path=str(SCREENSHOTS / "search.png"), full_page=True)

        page.goto(base + "/?source=web")  # filter: the GitLab document, with its link to the original
        search(page, "refund payment")
        expect(page.locator("#results .hit .source")).to_have_text(["web"])
        expect(page.locator("#results .hit a.original")).to_have_attribute("href", WEB_URL)
        assert "source=web" in page.url
        page.click(".active-filter")
        page.fill("#path", "billing/")
        search(page, "invoice")
        assert hit_paths(page) and all("billing/invoice.py" in h for h in hit_paths(page))
        page.fill("#path", "")
        page.goto(base + "/?q=invoice&kind=issue")
        expect(page.locator("#status")).to_contain_text(re.compile("(No results|Nothing relevant enough) for “invoice”"))
        page.goto(base + "/")

        search(page, "retry with backoff")  # feedback on the first hit is stored for this query
        first.locator("button.useful").click()
        expect(first.locator(".feedback")).to_have_attribute("data-sent", "useful")
        stored = app.state.audit.feedback(10)
        assert stored[0].useful and stored[0].user == "alice"
        assert stored[0].hit_id == first.get_attribute("data-id")

        page.keyboard.press("Escape")  # keyboard: / focuses the box, arrows and j move, Enter opens
        page.locator("body").focus()
        page.keyboard.press("/")
        expect(page.locator("#q")).to_be_focused()
        page.keyboard.press("ArrowDown")
        expect(first).to_be_focused()
        page.keyboard.press("j")
        expect(page.locator("#results .hit").nth(1)).to_be_focused()
        page.keyboard.press("k")
        expect(first).to_be_focused()
        href = first.get_attribute("data-href")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/documents/eng:pkg/retry\.py\?q=.+#L\d+"))
        line = int(re.search(r"#L(\d+)", href).group(1))
        expect(page.locator(f"#L{line}")).to_have_class(re.compile("hit-line"))
        expect(page.locator(".code mark").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "document.png"))
        page.goto(base + f"/documents/eng:pkg/retry.py?line={line}&end={line + 1}")  # older links still mark
        expect(page.locator(".code .hit-line")).to_have_count(2)

        page.set_viewport_size({"width": 380, "height": 800})  # narrow window, shared URL
        page.goto(base + "/?q=invoice&source=eng")
        expect(page.locator(".active-filter")).to_have_text(["source: eng ×"])
        expect(page.locator("#results .hit").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "search-narrow.png"), full_page=True)
        page.click(".signout button")
        page.wait_for_url(base + "/signin")
        assert not [c for c in page.context.cookies() if c["name"] == "cairn_session"]


def test_another_group_does_not_see_restricted_hits(site, browser):
    _app, base, tokens = site
    with watched_page(browser, allow=("404",)) as page:
        sign_in(page, base, tokens["ops"])
        search(page, "canary rollout")
        ops_hits = hit_paths(page)
        assert any("deploy/rollout.py" in h for h in ops_hits)
    with watched_page(browser, allow=("404",)) as page:
        sign_in(page, base, tokens["eng"])
        search(page, "canary rollout")
        assert not any("deploy/rollout.py" in h for h in hit_paths(page))
        page.goto(base + next(h for h in ops_hits if "deploy/rollout.py" in h))
        expect(page.locator("h1")).to_have_text("Not found")


def test_admin_console_reindexes_and_shows_problems(site, browser):
    _app, base, tokens = site
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['eng']}"}, timeout=10) as api:
        found = api.post("/v1/search", json={"query": "retry_with_backoff", "sources": ["eng"]}).json()
        api.post("/v1/feedback", json={"query_id": found["query_id"], "hit_id": found["hits"][0]["id"],
                                       "useful": False}).raise_for_status()
    with watched_page(browser, allow=("403",)) as page:
        sign_in(page, base, tokens["eng"])
        response = page.goto(base + "/admin")
        assert response.status == 403
    with watched_page(browser, viewport={"width": 1200, "height": 1000}) as page:
        sign_in(page, base, tokens["admin"], "/admin")
        row = page.locator('#sources tr[data-source="eng"]')
        expect(row).to_contain_text("idle")
        expect(page.locator("#stats")).to_contain_text("Embedding model")
        expect(page.locator('#problems [data-source="ops"]')).to_contain_text("mapping values not allowed")
        expect(page.locator('#problems [data-source="ops"] li.skipped')).to_contain_text("minified")
        expect(page.locator("#stats")).to_contain_text(re.compile(r"Size on disk\s*\d+(\.\d)? (KiB|MiB)"))
        expect(page.locator("#feedback")).to_contain_text("eng: pkg/retry.py L")
        row.locator("button.reindex").click()
        expect(page.locator("#admin-status")).to_contain_text("job ")
        job_id = re.search(r"job ([0-9a-f-]{36})", page.locator("#admin-status").inner_text()).group(1)
        expect(page.locator(f'#jobs tr[data-job="{job_id}"]')).to_have_attribute("data-state", "succeeded")
        expect(page.locator(f'#jobs tr[data-job="{job_id}"]')).to_contain_text("files seen")
        # the refreshes that followed kept the queued notice next to their timestamp
        expect(page.locator("#admin-status")).to_contain_text(re.compile(rf"job {job_id}\) · Updated "))
        page.screenshot(path=str(SCREENSHOTS / "admin.png"), full_page=True)


def test_cookie_writes_need_the_ui_header_and_sign_in_checks_origin(site):
    _app, base, tokens = site
    with httpx.Client(base_url=base, timeout=10) as client:  # a session opened with the eng token
        client.post("/signin", data={"token": tokens["eng"], "next": "/"}, headers={"Origin": base})
        cookies = {"cairn_session": client.cookies["cairn_session"]}
    body = {"query_id": "q", "hit_id": "h", "useful": True}
    with httpx.Client(base_url=base, cookies=cookies, timeout=10) as client:
        assert client.post("/v1/feedback", json=body).status_code == 403  # a cross-site form could do this
        assert client.post("/ui/search", json={"query": "retry"}, headers={"X-Cairn-UI": "1"}).status_code == 200
        assert client.get("/v1/sources").status_code == 200  # reads need no header
        assert client.get("/admin").status_code == 403
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/", follow_redirects=False).headers["location"].startswith("/signin")
        assert "frame-ancestors 'none'" in client.get("/signin").headers["content-security-policy"]
        form = {"token": tokens["eng"], "next": "//evil.example"}
        assert client.post("/signin", data=form, headers={"Origin": "https://evil.example"}).status_code == 403
        answer = client.post("/signin", data=form, headers={"Origin": base})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert "httponly" in answer.headers["set-cookie"].lower()
        bad = client.post("/signin", data={**form, "token": "cairn_nope"}, headers={"Origin": base})
        assert bad.status_code == 401


@pytest.mark.parametrize(("state", "done", "total", "eta"), [
    ("running", 25, 100, 30.0),  # 10 s for 25 -> 30 s for 75 more
    ("running", 0, 100, None),  # no rate yet
    ("running", 5, 0, None),  # no total yet
    ("succeeded", 100, 100, None),
])
def test_job_eta(state, done, total, eta):
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    job = JobRecord(id="j", source="s", kind="index", state=state, started_at=started, done=done, total=total)
    got = _eta_seconds(job)
    assert got == eta if eta is None else abs(got - eta) < 1
