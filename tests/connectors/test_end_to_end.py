"""One question across GitLab, Jira and Confluence: code, ticket and page come back together, each with its link."""
from __future__ import annotations

from fake_jira import person
from harness import register, search

from indexer.models import Principal
from workers import celery_app
from workers.tasks import sync_source

CHECKOUT = '''"""Checkout: charges a cart through the payment gateway."""


def checkout(cart, gateway):
    """Charge the cart. The gateway call times out after 30 seconds on big carts."""
    return gateway.charge(cart.total, timeout=30)
'''
UNRELATED = '''"""Avatars."""


def resize_avatar(image, size=128):
    """Scale a profile picture down to a square thumbnail."""
    return image.thumbnail((size, size))
'''


def seed(gl, jira, wiki, repo):
    """One story in three tools (plus unrelated items in each): the checkout times out."""
    repo.write("shop/checkout.py", CHECKOUT)
    repo.write("shop/avatars.py", UNRELATED)
    repo.commit()
    gl.add_group("shop")
    project = gl.add_project("shop/web", "internal", repo=repo.root, members={"dev": 30})
    gl.add_item(project, "issues", "Checkout spinner never stops", "The checkout page spins forever on slow networks")
    jira.add_issue("PAY-7", "Checkout times out for large carts",
                   "h2. Problem\n\nCheckout times out when the payment gateway takes longer than 30 seconds.",
                   reporter=person("dev", True))
    jira.add_issue("PAY-8", "Invoice PDF has the wrong logo", "The logo on invoices is outdated.")
    jira.grant("PAY", {"type": "applicationRole"})
    wiki.add_space("ENG", groups=["staff"])
    wiki.add_page("ENG", "Runbook: checkout timeouts",
                  "<h2>Why checkout times out</h2><p>The payment gateway is slow for big carts; "
                  "checkout gives up after 30 seconds.</p>")
    wiki.add_page("ENG", "Holiday calendar", "<p>Office closed on public holidays.</p>")


def test_why_does_checkout_time_out_finds_code_ticket_and_page(services, settings, make_repo, monkeypatch,
                                                               gitlab_server, jira_server, confluence_server):
    gl, jira, wiki = gitlab_server, jira_server, confluence_server
    for var, fake in (("E2E_GITLAB", gl), ("E2E_JIRA", jira), ("E2E_WIKI", wiki)):
        monkeypatch.setenv(var, fake.token)
    seed(gl, jira, wiki, make_repo("shop"))
    register(services, {"name": "gitlab", "kind": "gitlab", "url": gl.server.url, "group": "shop",
                        "token_env": "E2E_GITLAB", "internal_principal": "group:staff"})
    register(services, {"name": "jira", "kind": "jira", "url": jira.server.url, "deployment": "cloud",
                        "username": "bot@example.com", "projects": ["PAY"], "token_env": "E2E_JIRA",
                        "org_principal": "group:staff"})
    register(services, {"name": "wiki", "kind": "confluence", "url": wiki.url, "spaces": ["ENG"],
                        "username": "bot@example.com", "token_env": "E2E_WIKI", "deployment": "cloud"})
    celery_app.configure(settings)  # no broker: the tasks run in-process, through the same code path
    celery_app.attach_services(services)
    try:
        for name in ("gitlab", "jira", "wiki"):
            counts = sync_source.delay(name).get()
            assert counts["files_failed"] == 0 and counts["files_changed"] >= 2
    finally:
        celery_app.detach_services()

    # sally holds the org-wide group (an IdP group here) and, synced from Confluence, its group staff
    sally = Principal("sally", frozenset({"staff"}), linked=frozenset({"atlassian:group:staff"}))
    hits = search(services, "why does checkout time out", sally, limit=6)
    top = {h.doc_id: h for h in hits[:4]}
    page = next(h.doc_id for h in hits if h.title == "Runbook: checkout timeouts")
    assert {"gitlab:shop/web/shop/checkout.py", "jira:PAY-7", page} <= set(top), [h.doc_id for h in hits]
    assert all(hit.url.startswith("http://127.0.0.1:") for hit in top.values())
    assert "/wiki/spaces/ENG/pages/" in top[page].url
    assert top["jira:PAY-7"].url.endswith("/browse/PAY-7")
    assert "/shop/web/-/blob/" in top["gitlab:shop/web/shop/checkout.py"].url
    assert not search(services, "why does checkout time out", Principal("outsider"))
