"""Random values of the right shape for the redaction corpus: credentials (the secrets) and the look-alikes
around them (hashes, ids, hosts, images). Every function takes the corpus's seeded `random.Random`, so the
corpus is the same on every run. None of these values is a real credential."""
from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable

Gen = Callable[[random.Random], str]

LOWER, UPPER, DIGITS = string.ascii_lowercase, string.ascii_uppercase, string.digits
ALNUM = LOWER + UPPER + DIGITS
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
WORDS = ["harbor", "maple", "falcon", "copper", "violet", "summit", "orchid", "tundra", "meadow", "cobalt",
         "lantern", "saffron", "glacier", "pepper", "juniper", "marble", "thunder", "willow", "ember", "quartz"]
USERS = ["admin", "deploy", "svc-ci", "backup", "jenkins", "app", "reporting", "etl", "ops", "grafana", "alice",
         "bob.martin", "svc_billing", "root", "replicator"]


def chars(alphabet: str, n: int) -> Gen:
    return lambda rng: "".join(rng.choice(alphabet) for _ in range(n))


def _mixed(rng: random.Random, n: int, symbols: str) -> str:
    """n characters with at least one lower, upper and digit (and symbol when any are allowed), shuffled."""
    pools = [LOWER, UPPER, DIGITS] + ([symbols] if symbols else [])
    out = [rng.choice(p) for p in pools]
    out += [rng.choice(ALNUM + symbols * 2) for _ in range(n - len(out))]
    rng.shuffle(out)
    while out[0] in symbols or out[-1] in symbols:  # a symbol at an edge reads as punctuation in prose
        rng.shuffle(out)
    return "".join(out)


def password(symbols: str) -> Gen:
    return lambda rng: _mixed(rng, rng.randint(10, 16), symbols)


def human_password(rng: random.Random) -> str:
    """What people pick: a capitalised word, a symbol and digits (`Harbor!2031`), sometimes in leetspeak."""
    word = rng.choice(WORDS).capitalize()
    if rng.random() < 0.3:
        word = word.replace("a", "@").replace("o", "0").replace("e", "3")
    tail = str(rng.randint(2019, 2032)) if rng.random() < 0.5 else str(rng.randint(10, 9999))
    return word + rng.choice("!#$%&*?@") + tail


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    claims = {"sub": chars(ALNUM, 12)(rng), "iat": rng.randint(1_600_000_000, 1_800_000_000),
              "scope": rng.choice(["read", "admin", "deploy"])}
    return f"{header}.{_b64url(json.dumps(claims).encode())}.{chars(B64URL, 43)(rng)}"


def pem_body(rng: random.Random) -> str:
    raw = bytes(rng.getrandbits(8) for _ in range(48 * rng.randint(8, 14)))
    text = base64.b64encode(raw).decode()
    return "\n".join(text[i:i + 64] for i in range(0, len(text), 64))


def basic_auth(rng: random.Random) -> str:
    return base64.b64encode(f"{rng.choice(USERS)}:{password('!#%*-._')(rng)}".encode()).decode()


def b64_password(rng: random.Random) -> str:
    return base64.b64encode(password("!#%*-._")(rng).encode()).decode()


def azure_client_secret(rng: random.Random) -> str:
    return chars(ALNUM, 3)(rng) + rng.choice(DIGITS) + "Q~" + chars(ALNUM + "_~.-", 31)(rng).rstrip(".-~") + "a"


def slack_hook(rng: random.Random) -> str:
    return f"T{chars(UPPER + DIGITS, 8)(rng)}/B{chars(UPPER + DIGITS, 10)(rng)}/{chars(ALNUM, 24)(rng)}"


def _join(*parts: Gen | str) -> Gen:
    return lambda rng: "".join(p if isinstance(p, str) else p(rng) for p in parts)


SECRETS: dict[str, Gen] = {
    "pw": password("!#$%&*+-.=?@^_~"),  # inside quotes
    "pwsh": password("%+-._^~"),  # bare in a shell line, an INI value or a prose sentence
    "pwurl": password("-._~"),  # inside a URL or a DSN
    "pwconn": password("!#$%*+-.?@^_~"),  # inside a `key=value;` connection string
    "humanpw": human_password,
    "issue_password": lambda rng: "P@ssw0rd!2024",  # the form issue 16 found returned verbatim
    "hex32": chars(HEX, 32), "hex40": chars(HEX, 40), "hex64": chars(HEX, 64),
    "alnum24": chars(ALNUM, 24), "alnum32": chars(ALNUM, 32), "alnum40": chars(ALNUM, 40), "alnum64": chars(ALNUM, 64),
    "django": chars(LOWER + DIGITS + "!@#%^&*-_=+", 50),
    "akia": _join("AKIA", chars(UPPER + DIGITS, 16)),
    "aws_secret": chars(B64, 40),
    "google": _join("AIza", chars(ALNUM + "-_", 35)),
    "ghp": _join("ghp_", chars(ALNUM, 36)), "gho": _join("gho_", chars(ALNUM, 36)),
    "github_pat": _join("github_pat_11", chars(UPPER + DIGITS, 20), "_", chars(ALNUM, 59)),
    "glpat": _join("glpat-", chars(ALNUM + "_-", 20)),
    "xoxb": _join("xoxb-", chars(DIGITS, 11), "-", chars(DIGITS, 13), "-", chars(ALNUM, 24)),
    "slackhook": slack_hook,
    "stripe": _join("sk_live_", chars(ALNUM, 24)), "stripe_rk": _join("rk_live_", chars(ALNUM, 24)),
    "whsec": _join("whsec_", chars(ALNUM, 32)),
    "npm": _join("npm_", chars(ALNUM, 36)),
    "pypi": _join("pypi-AgEIcHlwaS5vcmc", chars(B64URL, 70)),
    "openai": _join("sk-proj-", chars(ALNUM + "-_", 74), "T3BlbkFJ", chars(ALNUM + "-_", 74)),
    "anthropic": _join("sk-ant-api03-", chars(ALNUM + "-_", 93), "AA"),
    "hf": _join("hf_", chars(LOWER + UPPER, 34)),
    "sendgrid": _join("SG.", chars(ALNUM + "-_", 22), ".", chars(ALNUM + "-_", 43)),
    "mailgun": _join("key-", chars(HEX, 32)),
    "dckr": _join("dckr_pat_", chars(ALNUM + "-_", 27)),
    "hvs": _join("hvs.", chars(ALNUM + "_-", 90)),
    "grafana": _join("glsa_", chars(ALNUM, 32), "_", chars(HEX, 8)),
    "gocspx": _join("GOCSPX-", chars(ALNUM + "-_", 28)),
    "sonar": _join("squ_", chars(HEX, 40)),
    "dapi": _join("dapi", chars(HEX, 32)),
    "azure_secret": azure_client_secret,
    "azure_storage": lambda rng: base64.b64encode(bytes(rng.getrandbits(8) for _ in range(64))).decode(),
    "jwt": jwt, "pem": pem_body, "basic": basic_auth, "b64pw": b64_password,
    "uuid_token": lambda rng: _uuid(rng),  # noqa: PLW0108 - _uuid is defined below
    "bearer": chars(ALNUM + "-_", 40),
}


def _uuid(rng: random.Random) -> str:
    h = chars(HEX, 32)(rng)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{rng.choice('89ab')}{h[17:20]}-{h[20:]}"


def _png(rng: random.Random) -> str:
    """A small PNG as a data URL body: the real signature and IHDR, random pixel bytes."""
    head = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
    return base64.b64encode(head + bytes(rng.getrandbits(8) for _ in range(rng.randint(90, 200)))).decode()


BENIGN: dict[str, Gen] = {
    "sha40": chars(HEX, 40), "sha7": chars(HEX, 7), "sha64": chars(HEX, 64), "uuid": _uuid,
    "sri": lambda rng: base64.b64encode(bytes(rng.getrandbits(8) for _ in range(48))).decode(),
    "npm_integrity": lambda rng: base64.b64encode(bytes(rng.getrandbits(8) for _ in range(64))).decode(),
    "png": _png, "sshpub": lambda rng: "AAAAC3NzaC1lZDI1NTE5AAAAI" + chars(B64, 43)(rng),
    "gpg_fpr": chars("0123456789ABCDEF", 40),
    "user": lambda rng: rng.choice(USERS), "word": lambda rng: rng.choice(WORDS),
    "host": lambda rng: f"{rng.choice(['db', 'api', 'cache', 'mq', 'git', 'ci'])}-{rng.randint(1, 9)}."
                        f"{rng.choice(['internal', 'prod.acme.io', 'staging.acme.io', 'corp.example.net'])}",
    "domain": lambda rng: rng.choice(["acme.io", "example.org", "widgets.dev", "corp.example.net"]),
    "db": lambda rng: rng.choice(["billing", "orders", "analytics", "inventory", "app"]),
    "num": lambda rng: str(rng.randint(2, 9999)),
    "issue": lambda rng: f"{rng.choice(['OPS', 'PLAT', 'SEC', 'INFRA'])}-{rng.randint(10, 4999)}",
    "email": lambda rng: f"{rng.choice(['alerts', 'noreply', 'ops', 'billing'])}@{rng.choice(['acme.io', 'widgets.dev'])}",
    "version": lambda rng: f"{rng.randint(1, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 15)}",
}
