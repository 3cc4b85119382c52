"""The admin console's source actions in headless chromium: who may read each source, editing its access
(served to the new readers once the access job ends), and removing it behind a confirmation."""
from __future__ import annotations

import re
import shutil
import time

import httpx
import pytest
from playwright.sync_api import expect
from web_harness import CHROMIUM, SCREENSHOTS, build_corpus, serve, sign_in, token, watched_page

from api.app import create_app
from api.audit import AuditLog

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium (make browser)")


@pytest.fixture
def site(tmp_path, embedder):
    settings, services = build_corpus(tmp_path, embedder)
    with serve(create_app(settings, services=services)) as base:
        yield base, services
    services.close()


def sources_found(base: str, tok: str, query: str) -> set[str]:
    body = httpx.post(f"{base}/v1/search", json={"query": query, "limit": 20},
                      headers={"Authorization": f"Bearer {tok}"}).json()
    return {h["source"] for h in body["hits"]}


def test_admin_edits_access_and_removes_a_source(site, browser):
    base, services = site
    admin, eng, new = token(services, admin=True), token(services, groups=["eng"]), token(services, groups=["new"])
    assert "eng" in sources_found(base, eng, "retry backoff") and sources_found(base, new, "retry backoff") == set()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with watched_page(browser, allow=("status of 400",)) as page:  # the refused change below
        sign_in(page, base, admin, "/admin")
        expect(page.locator('.readers[data-source="eng"]')).to_have_text("group:eng")
        page.get_by_role("button", name="Edit access, ref and schedule of eng").click()
        expect(page.locator("#edit-source")).to_be_visible()
        expect(page.locator("#edit-access")).to_have_value("group:eng")
        page.fill("#edit-access", "group:new")
        page.screenshot(path=str(SCREENSHOTS / "admin-edit-source.png"), full_page=True)
        page.click("#edit-save")
        expect(page.locator("#edit-source")).to_be_hidden()
        expect(page.locator("#admin-status")).to_contain_text(re.compile(r"eng: changed access \(access job "))
        expect(page.locator('.readers[data-source="eng"]')).to_have_text("group:new")
        deadline = time.monotonic() + 30
        while "eng" not in sources_found(base, new, "retry backoff") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "eng" in sources_found(base, new, "retry backoff") and "eng" not in sources_found(base, eng, "retry")
        # a refused change shows the server's reason
        page.get_by_role("button", name="Edit access, ref and schedule of eng").click()
        page.fill("#edit-access", "team:x")
        page.click("#edit-save")
        expect(page.locator("#admin-status")).to_contain_text("400")
        expect(page.locator("#admin-status")).to_contain_text("team:x")
        # removal asks first: dismissed, nothing happens; accepted, the source is gone
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.get_by_role("button", name="Remove ops").click()
        expect(page.locator('tr[data-source="ops"]')).to_have_count(1)
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Remove ops").click()
        expect(page.locator("#admin-status")).to_contain_text("ops removed: 1 documents")
        expect(page.locator('#sources tr[data-source="ops"]')).to_have_count(0)
        page.screenshot(path=str(SCREENSHOTS / "admin-sources.png"), full_page=True)
    assert services.catalog.get_source("ops") is None
    assert [e.action for e in AuditLog(services.catalog.engine).entries() if e.action.startswith("sources.")] == [
        "sources.remove", "sources.update"]
