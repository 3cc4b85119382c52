"""Files that are secrets by nature (.env, private keys, key stores, credential files): never indexed.

Judged from the path, and for files that only sometimes hold credentials (.npmrc, .pypirc, kubeconfig,
JSON key files, Docker config) from the content too. `secret_file_reason` returns the detail an admin
sees next to the `secret_file` skip reason, or None for an ordinary file."""
from __future__ import annotations

import re

# .env.example and friends document the variables without their values: they are indexed (and redacted).
ENV_TEMPLATE_SUFFIXES = ("example", "sample", "template", "tmpl", "tpl", "dist", "defaults", "default", "schema")
KEY_EXTENSIONS = {
    "pem": "PEM key or certificate file", "key": "private key file", "p12": "PKCS#12 key store",
    "pfx": "PKCS#12 key store", "jks": "Java key store", "keystore": "key store", "bks": "key store",
    "ppk": "PuTTY private key", "kdbx": "KeePass database", "tfstate": "Terraform state (holds resource secrets)",
    "gpg": "GPG encrypted or key file",
}
SECRET_NAMES = {
    ".netrc": "netrc credentials", "_netrc": "netrc credentials", ".pgpass": "PostgreSQL password file",
    ".git-credentials": "git credential store", ".htpasswd": "htpasswd password file",
    "credentials.db": "gcloud credential store", "access_tokens.db": "gcloud credential store",
    "secring.gpg": "GPG secret key ring", "terraform.tfstate.backup": "Terraform state (holds resource secrets)",
    "master.key": "Rails master key", "keystore.properties": "Android signing key store credentials",
}
_SSH_KEY = re.compile(r"id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?(?:[._-].*)?")
_NPM_AUTH = re.compile(r"(?im)^\s*(?:\S*:)?_(?:authToken|auth|password)\s*=\s*\S|^\s*npmAuthToken\s*:\s*\S")
_PYPIRC_PASSWORD = re.compile(r"(?im)^\s*password\s*[=:]\s*\S")
_KUBE_CREDENTIALS = re.compile(r"(?m)^\s*(?:token|client-key-data|password|id-token|refresh-token)\s*:\s*\S")
_KUBECONFIG = re.compile(r"(?m)^kind:\s*Config\s*$")
_AWS_CREDENTIALS = re.compile(r"(?im)^\s*aws_secret_access_key\s*=\s*\S")
_SERVICE_ACCOUNT = re.compile(r"\"type\"\s*:\s*\"service_account\"")
_PRIVATE_KEY_FIELD = re.compile(r"\"private_key\"\s*:\s*\"-----BEGIN")
_OAUTH_CLIENT = re.compile(r"\"(?:installed|web)\"\s*:\s*\{[^{}]*\"client_secret\"\s*:\s*\"[^\"]{8,}\"")
_DOCKER_AUTH = re.compile(r"\"(?:auth|identitytoken)\"\s*:\s*\"[A-Za-z0-9+/=._\-]{8,}\"")


def _env_file(name: str) -> bool:
    """.env, .env.local, .env.production, prod.env; not .env.example / .env.sample / .env.template."""
    lowered = name.lower()
    if lowered == ".env":
        return True
    if lowered.startswith(".env."):
        return not lowered[5:].endswith(ENV_TEMPLATE_SUFFIXES)
    if lowered.endswith(".env") and lowered != ".env":
        stem = lowered[:-4]
        return not stem.endswith(ENV_TEMPLATE_SUFFIXES)
    return False


def _by_path(path: str) -> str | None:
    parts = path.replace("\\", "/").split("/")
    name = parts[-1]
    lowered = name.lower()
    if _env_file(name):
        return "environment file (.env)"
    if _SSH_KEY.fullmatch(lowered) and not lowered.endswith(".pub"):
        return "SSH private key"
    if lowered in SECRET_NAMES:
        return SECRET_NAMES[lowered]
    ext = lowered.rpartition(".")[2] if "." in lowered else ""
    if ext in KEY_EXTENSIONS:
        return KEY_EXTENSIONS[ext]
    return None


def _by_content(path: str, content: str) -> str | None:
    parts = path.replace("\\", "/").lower().split("/")
    name = parts[-1]
    parent = parts[-2] if len(parts) > 1 else ""
    if name in (".npmrc", ".yarnrc", ".yarnrc.yml") and _NPM_AUTH.search(content):
        return "npm configuration with credentials"
    if name == ".pypirc" and _PYPIRC_PASSWORD.search(content):
        return "PyPI configuration with a password"
    if (parent == ".aws" and name == "credentials") or (name == "credentials" and _AWS_CREDENTIALS.search(content)):
        return "AWS credentials file"
    kubeconfig = (name in ("kubeconfig", "config") and parent == ".kube") or name.endswith(".kubeconfig") \
        or name == "kubeconfig" or _KUBECONFIG.search(content[:20000]) is not None
    if kubeconfig and _KUBE_CREDENTIALS.search(content):
        return "kubeconfig with credentials"
    if name.endswith(".json") or content.lstrip()[:1] == "{":
        head = content[:100_000]
        if _SERVICE_ACCOUNT.search(head) and _PRIVATE_KEY_FIELD.search(head):
            return "GCP service-account key file"
        if _OAUTH_CLIENT.search(head):
            return "OAuth client secret file"
        if parent == ".docker" and name == "config.json" and _DOCKER_AUTH.search(head):
            return "Docker credentials file"
    return None


def secret_file_reason(path: str, content: str = "") -> str | None:
    """Why this file is a secret by nature ("" never), or None when it is an ordinary file."""
    return _by_path(path) or _by_content(path, content)
