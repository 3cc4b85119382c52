"""A real OpenID provider for the identity tests: tests/idp/idp.mjs (oidc-provider on Node.js, installed by
`make setup` with `npm ci --prefix tests/idp`), started on a loopback port, plus a browser-like walk
through its sign-in (HTTP redirects, its sign-in form) that ends at the client's redirect URI."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

IDP_DIR = Path(__file__).resolve().parents[1] / "idp"
WEB_CLIENT_ID = "cairn-web"
WEB_CLIENT_SECRET = "test-only-web-client-secret-1b7f"  # a test provider's client, never a real secret
USERS = {
    "alice": {"email": "alice@example.com", "preferred_username": "alice", "groups": ["eng", "cairn-admins"]},
    "bob": {"email": "bob@example.com", "preferred_username": "bob", "groups": ["ops"]},
}


def require_node() -> str:
    """The `node` binary; the tests skip (saying why) only where Node.js is not installed at all."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the test OpenID provider (tests/idp, oidc-provider) needs it")
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("tests/idp has no node_modules: run `make setup` (npm ci --prefix tests/idp)")
    return node


def new_key() -> dict[str, Any]:
    """A fresh RSA signing key as a private JWK with its own kid."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private))
    return {**jwk, "kid": uuid.uuid4().hex[:12], "alg": "RS256", "use": "sig"}


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LocalIdP:
    """oidc-provider in a child process. `restart(keys)` starts it again on the same port (same issuer)
    with other signing keys: key rotation."""

    def __init__(self, workdir: Path, cairn_base: str, keys: list[dict] | None = None) -> None:
        self.workdir = workdir
        self.cairn_base = cairn_base
        self.keys = keys or [new_key()]
        self.port = 0
        self.issuer = ""
        self.proc: subprocess.Popen | None = None

    @property
    def resource(self) -> str:
        return self.cairn_base + "/mcp"

    def config(self) -> dict[str, Any]:
        return {
            "port": self.port, "jwks": {"keys": self.keys}, "users": USERS, "resource": self.resource,
            "access_token_ttl": 300,
            "clients": [{
                "client_id": WEB_CLIENT_ID, "client_secret": WEB_CLIENT_SECRET,
                "redirect_uris": [self.cairn_base + "/signin/callback"],
                "post_logout_redirect_uris": [self.cairn_base + "/signin"],
                "grant_types": ["authorization_code"], "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            }],
        }

    def start(self) -> LocalIdP:
        node = require_node()
        path = self.workdir / f"idp-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(self.config()), encoding="utf-8")
        self.proc = subprocess.Popen([node, str(IDP_DIR / "idp.mjs"), str(path)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=IDP_DIR,
                                     env={**os.environ, "NODE_ENV": "test"})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the test IdP did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.issuer = json.loads(line)["issuer"]
        self.port = int(urlsplit(self.issuer).port or 0)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def restart(self, keys: list[dict]) -> None:
        self.stop()
        self.keys = keys
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except RuntimeError:  # the port not free again yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def sign(self, claims: dict[str, Any], key: dict | None = None, alg: str = "RS256",
             headers: dict[str, Any] | None = None) -> str:
        """A JWT signed as this provider would (with its current key unless another is given)."""
        jwk = key or self.keys[0]
        private = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
        return jwt.encode(claims, private, algorithm=alg, headers={"kid": jwk["kid"], **(headers or {})})


def authorize(browser: httpx.Client, url: str, user: str, stop_at: str) -> str:
    """Follows the IdP's redirects from an authorization (or logout) URL, signs `user` in on its form,
    and returns the first URL under `stop_at` it is sent to (the client's redirect URI)."""
    for _ in range(20):
        if url.startswith(stop_at):
            return url
        resp = browser.get(url)
        if resp.is_redirect:
            url = urljoin(url, resp.headers["location"])
            continue
        assert resp.status_code == 200, (url, resp.status_code, resp.text[:300])
        form = resp.text
        action = form.split('action="', 1)[1].split('"', 1)[0]
        resp = browser.post(urljoin(url, action), data={"login": user})
        assert resp.is_redirect, (resp.status_code, resp.text[:300])
        url = urljoin(url, resp.headers["location"])
    raise AssertionError(f"the IdP never sent the browser to {stop_at}")


def signed_in(cairn: str, user: str) -> httpx.Client:
    """A fresh browser signed in to Cairn at `cairn` through the IdP as `user` (holding the session cookie)."""
    browser = httpx.Client(timeout=30, follow_redirects=False)
    start = browser.get(cairn + "/signin/oidc", params={"next": "/"})
    assert start.status_code == 303, start.text[:300]
    answer = browser.get(authorize(browser, start.headers["location"], user, cairn + "/signin/callback"))
    assert answer.status_code == 303 and "cairn_session" in browser.cookies, answer.text[:300]
    return browser
