"""The Tokens page end to end: sign-in through a real OpenID provider (oidc-provider on loopback), then a
personal token made, copied, used, listed and revoked in headless Debian chromium; admins revoke anyone's."""
from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect
from web_harness import CHROMIUM, SCREENSHOTS, build_corpus, serve, watched_page

from api.app import create_app

from idp_harness import WEB_CLIENT_ID, WEB_CLIENT_SECRET, LocalIdP, free_socket, signed_in  # isort: skip

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian chromium (make browser)")


@pytest.fixture(scope="module")
def site(tmp_path_factory, embedder) -> Iterator[str]:
    work = tmp_path_factory.mktemp("tokens-page")
    settings, services = build_corpus(work, embedder)
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idp = LocalIdP(work, base).start()
    (work / "client-secret").write_text(WEB_CLIENT_SECRET, encoding="utf-8")
    settings = settings.model_copy(update={
        "oidc_issuer": idp.issuer, "oidc_client_id": WEB_CLIENT_ID, "oidc_client_secret_file": work / "client-secret",
        "oidc_scopes": "openid email profile groups", "admin_groups": ["cairn-admins"], "public_url": base,
        "rate_limit_per_minute": 0, "personal_token_max_days": 90})
    try:
        with serve(create_app(settings, services=services), sock) as url:
            yield url
    finally:
        idp.stop()
        services.close()


def sign_in_through_idp(page: Page, base: str, user: str) -> None:
    """From /tokens: Cairn's sign-in page, the organization button, the IdP's own form, back on /tokens."""
    # The test IdP's sign-in form has no icon: the browser's /favicon.ico there would log a 404.
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page.goto(base + "/tokens")
    page.click("#signin-oidc")
    page.fill("input[name=login]", user)
    page.click("button")
    page.wait_for_url(base + "/tokens")


def search_status(base: str, tok: str) -> int:
    return httpx.post(base + "/v1/search", json={"query": "retry with backoff"},
                      headers={"Authorization": f"Bearer {tok}"}, timeout=60).status_code


def test_create_copy_use_and_revoke_a_token_on_the_page(site, browser):
    base = site
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    bob = signed_in(base, "bob")
    bobs = bob.post(base + "/v1/me/tokens", json={"name": "bob's agent", "expires_in_days": 7},
                    headers={"X-Cairn-UI": "1"}).json()
    options = {"viewport": {"width": 1280, "height": 900}, "permissions": ["clipboard-read", "clipboard-write"]}
    with watched_page(browser, **options) as page:
        sign_in_through_idp(page, base, "alice")
        expect(page.locator("#my-tokens tbody")).to_contain_text("No tokens yet.")
        assert page.locator("#token-expiry option").all_inner_texts() == ["7 days", "30 days", "90 days (maximum)"]
        page.fill("#token-name", "laptop VS Code")
        page.select_option("#token-expiry", "7")
        page.click("#create-token")
        expect(page.locator("#created")).to_be_visible()
        tok = page.locator("#new-token-value").inner_text()
        assert tok.startswith("cairn_")
        expect(page.locator("#snippet-mcp")).to_contain_text(f'"url": "{base}/mcp"')
        expect(page.locator("#snippet-mcp")).to_contain_text(f"Bearer {tok}")
        expect(page.locator("#snippet-continue")).to_contain_text(f"apiKey: {tok}")
        page.click("#copy-token")
        expect(page.locator("#copy-status")).to_have_text("Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == tok
        row = page.locator("#my-tokens tr", has_text="laptop VS Code")
        expect(row).to_contain_text("active")
        expect(page.locator("#all-tokens tr", has_text="bob's agent")).to_contain_text("personal")  # alice: admin
        page.screenshot(path=str(SCREENSHOTS / "tokens-1280.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(SCREENSHOTS / "tokens-390.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the page itself never scrolls sideways
        box = page.locator("#my-tokens button.revoke").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390  # Revoke reachable without scrolling
        page.set_viewport_size({"width": 1280, "height": 900})

        assert search_status(base, tok) == 200  # the token works as alice
        page.click("#created-done")
        expect(page.locator("#created")).to_be_hidden()
        assert tok not in page.content()  # gone from the page for good

        page.on("dialog", lambda dialog: dialog.accept())
        row.locator("button.revoke").click()
        expect(row).to_contain_text("revoked")
        expect(page.locator("#tokens-status")).to_contain_text("Revoked")
        assert search_status(base, tok) == 401

        bobs_row = page.locator(f'#all-tokens tr[data-token="{bobs["id"]}"]')
        bobs_row.locator("button.revoke").click()  # an admin revokes someone else's token
        expect(bobs_row).to_contain_text("revoked")
        assert search_status(base, bobs["token"]) == 401


def test_a_non_admin_sees_only_their_own_tokens(site, browser):
    base = site
    alice = signed_in(base, "alice")
    hers = alice.post(base + "/v1/me/tokens", json={"name": "alice's secret agent", "expires_in_days": 7},
                      headers={"X-Cairn-UI": "1"}).json()
    with watched_page(browser, viewport={"width": 390, "height": 844}) as page:
        sign_in_through_idp(page, base, "bob")
        expect(page.locator("#my-tokens tbody")).to_contain_text("bob's agent")
        expect(page.locator("#all-tokens")).to_have_count(0)
        assert "alice's secret agent" not in page.content() and hers["id"] not in page.content()
