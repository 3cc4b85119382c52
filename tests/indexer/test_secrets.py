"""The secret detector, the secret-file rules and the screen: what is redacted, what is kept, and how."""
from __future__ import annotations

import logging

import pytest

from indexer.models import Access, Document, Skipped, SkipReason
from indexer.secrets.detector import MARKER_PATTERN, SecretDetector
from indexer.secrets.files import secret_file_reason
from indexer.secrets.screen import SecretScreen, glob_pattern
from indexer.secrets.values import assignment_kind, shannon_entropy

# Made-up credentials in each format (random-looking, none of them real).
PEM_BODY = ("MIIEowIBAAKCAQEAvR8sX2lQ0pT7mZk3yN9cW4hJ6fA1bE5gD8iK0oL2nM4qP6rS\n"
            "t8uV0wX2yZ4aB6cD8eF0gH2iJ4kL6mN8oP0qR2sT4uV6wX8yZ0aB2cD4eF6gH8iJ\n"
            "0kL2mN4oP6qR8sT0uV2wX4yZ6aB8cD0eF2gH4iJ6kL8mN0oP2qR4sT6uV8wX0yZ")
TRUE_POSITIVES = [
    ("aws-access-key-id", 'aws_access_key_id = "{s}"', "AKIAQ3EGRZ7UDXKV4N2P"),
    ("aws-secret-key", "aws_secret_access_key={s}", "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"),
    ("aws-secret-key", 'AWS_SECRET_ACCESS_KEY: "{s}"', "wq7Rz+K3vN9mP2xL5tY8bC1dF4gH6jQ0sA3eU7iO"),
    ("private-key", "-----BEGIN RSA PRIVATE KEY-----\n{s}\n-----END RSA PRIVATE KEY-----", PEM_BODY),
    ("private-key", "-----BEGIN OPENSSH PRIVATE KEY-----\n{s}\n-----END OPENSSH PRIVATE KEY-----", PEM_BODY),
    ("private-key", "-----BEGIN EC PRIVATE KEY-----\n{s}\n-----END EC PRIVATE KEY-----", PEM_BODY),
    ("private-key", "-----BEGIN PRIVATE KEY-----\n{s}\n-----END PRIVATE KEY-----", PEM_BODY),
    ("private-key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n{s}\n-----END PGP PRIVATE KEY BLOCK-----", PEM_BODY),
    ("private-key", '{{"private_key": "-----BEGIN PRIVATE KEY-----\\n{s}\\n-----END PRIVATE KEY-----\\n"}}',
     PEM_BODY.replace("\n", "\\n")),
    ("private-key", "key = '''-----BEGIN RSA PRIVATE KEY-----\n{s}\n", PEM_BODY),  # cut short, no END line
    ("github-token", "GITHUB_TOKEN={s}", "ghp_R3k9vXw2LqP8sT6yZ1bN4mC7dF0gH5jK2aQe"),
    ("github-token", "token: {s}", "gho_Zx8Wv6Ut4Sr2Qp0On8Ml6Kj4Ih2Gf0Ed8Cb6A"),
    ("github-token", "ghs = '{s}'", "ghs_9aB8cD7eF6gH5iJ4kL3mN2oP1qR0sT9uV8wX"),
    ("github-token", "{s}", "github_pat_11ABCDE2F0q9W8e7R6t5Y4_u3I2o1P0aSdFgHjKlZxCvBnM1q2W3e4R5t6Y7u8I9o0P"),
    ("gitlab-token", "private_token = '{s}'", "glpat-Xk3v9Rq2Lw8Ps6Ty1Zb4"),
    ("gitlab-token", "CI_DEPLOY_TOKEN={s}", "gldt-7Hq2Wm9Zk4Xp1Rv8Ls3N"),
    ("gitlab-token", "runner token {s}", "glrt-Pz3Kq8Wm1Xv6Rt9Ly2Nb5"),
    ("slack-token", 'SLACK_BOT_TOKEN="{s}"', "xoxb-2718281828-3141592653-Zq8Wk3Rv9Lm2Xp4Tn6Ys1Bc"),
    ("slack-token", "{s}", "xoxp-9081726354-4637281905-8Kd2Lq9Zw3Xm7Rv1Tp5Ny4Bs6Hc0Gf"),
    ("slack-webhook", "url: https://hooks.slack.com/services/{s}", "T4K2J9QZP/B8L3M7N1R/q7Wk2Lm9Zx4Rt8Vb3Np6Yc1D"),
    ("stripe-key", "stripe.api_key = '{s}'", "sk_live_51Hq8Zk3Wm9Xp2Rv7Lt4Ny6Bc"),
    ("jwt", "Authorization: Bearer {s}",
     "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjYWlybiIsImlhdCI6MTcwMDAwMDAwMH0.q3Zk8Wm2Xp9Rv4Lt7Ny1Bc6Hd0Gf5Js"),
    ("url-password", "DATABASE_URL=postgres://app:{s}@db.internal:5432/app", "S3cr3tPa55w0rd"),
    ("url-password", "mongo = 'mongodb+srv://svc:{s}@cluster0.mongodb.net/prod'", "k9Lq2Wz8Xv"),
    ("url-password", "REDIS_URL=redis://:{s}@cache:6379/0", "Rz7Qp2Kw9Lm4"),
    ("url-password", "amqp://worker:{s}@rabbit:5672//", "h8Jk2Lq9Wz"),
    ("url-password", "mysql://root:{s}@localhost/app", "Vq3Zr8Kp1Wm"),
    ("connection-string-password",
     'conn = "Server=tcp:sql.example.net;Database=app;User ID=svc;Password={s};Encrypt=True"', "Qw3rty!Zx9"),
    ("azure-storage-key", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={s};EndpointSuffix=core.windows.net",
     "Zq8Wk3Rv9Lm2Xp4Tn6Ys1BcHd0Gf5Js7Kq2Wm9Xp4Rv8Lt3Ny6Bc1Hd5Gf0Js7Kq2Wm9Xp4Rv8Lt3Ny6Bc1Hd5Gf0Js7Kq2W=="),
    ("azure-sas-signature", "https://acct.blob.core.windows.net/c?sv=2022-11-02&sig={s}",
     "Zq8Wk3Rv9Lm2Xp4Tn6Ys1BcHd0Gf5Js7Kq2Wm9Xp4Rv%3D"),
    ("google-api-key", "key={s}", "AIzaSyD8kQ2Wm9Xp4Rv8Lt3Ny6Bc1Hd5Gf0Js7K"),
    ("npm-token", "//registry.npmjs.org/:_authToken={s}", "npm_Zq8Wk3Rv9Lm2Xp4Tn6Ys1BcHd0Gf5Js7Kq2W"),
    ("pypi-token", "password = {s}",
     "pypi-AgEIcHlwaS5vcmcCJDk4ZjQ1ZjU3LTk1YjItNGQ5Ny1hZGY3LWM5ZDNmNjA4YzQ0NQACKlszLCJmYTk5"),
    ("basic-auth", 'headers = {{"Authorization": "Basic {s}"}}', "YWxpY2U6czNjcjN0LVo5cTI="),
    ("bearer-token", "curl -H 'Authorization: Bearer {s}'", "Zq8Wk3Rv9Lm2Xp4Tn6Ys1BcHd0Gf5"),
    ("secret-assignment", 'password = "{s}"', "Tr0ub4dor&3x"),
    ("secret-assignment", "DB_PASSWORD={s}", "kT9#vQ2!mW7z"),
    ("secret-assignment", '  "client_secret": "{s}",', "8Q~xK2mP9vL4nR7tW1yZ3bC6dF0gH5jK8aS"),
    ("secret-assignment", "api_key: {s}", "4f9c2a7e1b8d3f6a0c5e9b2d7a4f1c8e"),
    ("secret-assignment", "SECRET_KEY = '{s}'", "k3$9vq!2lz#8xw@4rt&6yb^0cd*2ef%4"),
    ("secret-assignment", 'private static final String apiKey = "{s}";', "Zq8Wk3Rv9Lm2Xp4Tn6Ys"),
    ("secret-assignment", 'accessToken := "{s}"', "a1B2c3D4e5F6g7H8i9J0k1L2"),
    ("secret-assignment", "config.auth_token = '{s}'", "7Gk2Wq9Zr4Xm8Lp3Tn6V"),
    ("secret-assignment", "<password>{s}</password>", "n7Qz!k2Wp9xR"),
    ("secret-assignment", "spring.datasource.password={s}", "Pg9k2Lq7Wz3x"),
    ("secret-assignment", "def connect(password: str = \"{s}\"):", "Zk9q2Lw7Xr3p"),
    ("secret-assignment", ":password => '{s}'", "Vb8n3Mq6Kx1z"),
]

FALSE_POSITIVES = [
    'password = "changeme"', "password = 'password'", 'password = ""', "PASSWORD=${DB_PASSWORD}",
    'token = os.environ["GITHUB_TOKEN"]', "api_key = os.getenv('API_KEY')", 'api_key = "<your-token>"',
    'secret = "xxxxxxxxxxxxxxxx"', "token: $CI_JOB_TOKEN", 'password: "{{ vault_db_password }}"',
    "self.token = token", "max_tokens = 1000", 'token_url = "https://gitlab.example.com/oauth/token"',
    "password_field = forms.CharField(widget=forms.PasswordInput)", 'token_type = "Bearer"',
    'SECRET_KEY = settings.SECRET_KEY', "secret_name = 'prod/db/password'", 'password = "hunter2"',
    "if password == expected_password:", "password = get_password(user)", "key = cache_key(request)",
    'secret = "abc"', "token = request.headers['X-Token']", "client_secret=${{ secrets.CLIENT_SECRET }}",
    "Pass :class:`Plot` a dataset and specify assignments", "password: process.env.DB_PASSWORD",
    'password = f"{prefix}-{suffix}"', 'api_key = "YOUR_API_KEY_HERE"', "PASSWORD=changeit",
    "url = 'postgresql://user:password@localhost/db'", "url = f'postgresql://{user}:{password}@{host}/db'",
    "DATABASE_URL=postgres://postgres:postgres@localhost:5432/test", "redis://localhost:6379/0",
    "ftp://anonymous:guest%40example.org@ftp.example.org/pub", "git@github.com:org/repo.git",
    "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "AKIAIOSFODNN7EXAMPLE",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN CERTIFICATE-----\n" + PEM_BODY + "\n-----END CERTIFICATE-----",
    "Authorization: Basic <credentials>", "Authorization: Bearer $TOKEN", "token = None", "password = null",
    "secret_key_path = '/etc/app/secret.key'", "TOKEN_FILE=~/.config/app/token", "tokenizer = Tokenizer()",
    "public_key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2Wm9Xp4Rv8Lt3Ny6Bc1Hd5Gf0Js7Kq2Wm9Xp4Rv8'",
    "commit = '4f9c2a7e1b8d3f6a0c5e9b2d7a4f1c8e4f9c2a7e'", 'password_hash_algorithm = "argon2id"',
    "Server=db;Database=app;Trusted_Connection=True;", "sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
    'TEST_PASSWORD = "testpass123"', 'password = "P@ssword"', "password: !vault |", "api_key = API_KEY",
]


@pytest.mark.parametrize("rule,template,secret", TRUE_POSITIVES)
def test_each_secret_format_is_redacted_by_its_rule(rule, template, secret):
    text = "first line\n" + template.format(s=secret) + "\nlast line\n"
    result = SecretDetector().redact(text)
    assert secret not in result.text
    assert [f.rule for f in result.findings] == [rule]
    assert f"[REDACTED:{rule}]" in result.text
    assert result.text.count("\n") == text.count("\n")
    assert result.findings[0].line == 2 + template.split("{s}")[0].count("\n")
    assert result.text.startswith("first line\n")
    assert result.text.endswith("\nlast line\n")


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_placeholders_code_and_prose_are_not_redacted(text):
    result = SecretDetector().redact(text)
    assert result.findings == () and result.text == text


def test_redaction_keeps_every_line_where_it_was():
    text = ("a = 1\n-----BEGIN RSA PRIVATE KEY-----\n" + PEM_BODY + "\n-----END RSA PRIVATE KEY-----\n"
            "def after():\n    password = 'Tr0ub4dor&3x'\n    return 2\n")
    result = SecretDetector().redact(text)
    before, after = text.splitlines(), result.text.splitlines()
    assert len(before) == len(after)
    assert after[1] == "-----BEGIN RSA PRIVATE KEY-----" and after[2] == "[REDACTED:private-key]"
    assert after[3:5] == ["", ""] and after[5] == "-----END RSA PRIVATE KEY-----"
    assert after[6] == "def after():" and after[7] == "    password = '[REDACTED:secret-assignment]'"
    assert [(f.rule, f.line) for f in result.findings] == [("private-key", 3), ("secret-assignment", 8)]


def test_markers_carry_no_part_or_hash_of_the_secret():
    secret = "ghp_R3k9vXw2LqP8sT6yZ1bN4mC7dF0gH5jK2aQe"
    result = SecretDetector().redact(f"a = '{secret}'\nb = '{secret}'\n")
    assert result.text == "a = '[REDACTED:github-token]'\nb = '[REDACTED:github-token]'\n"
    assert result.counts() == {"github-token": 2}


def test_redacting_redacted_text_changes_nothing():
    text = "\n".join(template.format(s=secret) for _, template, secret in TRUE_POSITIVES)
    once = SecretDetector().redact(text).text
    again = SecretDetector().redact(once)
    assert again.text == once and again.findings == ()


def test_offsets_stay_right_when_lower_casing_changes_the_length():
    text = "İstanbul İzmir: token = 'glpat-Xk3v9Rq2Lw8Ps6Ty1Zb4' ok\n"
    assert "İ".lower() != "i" and len("İ".lower()) == 2
    assert SecretDetector().redact(text).text == "İstanbul İzmir: token = '[REDACTED:gitlab-token]' ok\n"


def test_allowlist_keeps_values_or_lines_it_matches():
    text = 'password = "Tr0ub4dor&3x"\nfixture_password = "Zk9q2Lw7Xr3p"  # cairn: allow\n'
    assert len(SecretDetector().redact(text).findings) == 2
    by_line = SecretDetector(allow=[r"cairn: allow"]).redact(text)
    assert [f.line for f in by_line.findings] == [1] and "Zk9q2Lw7Xr3p" in by_line.text
    by_value = SecretDetector(allow=[r"^Tr0ub4dor"]).redact(text)
    assert [f.line for f in by_value.findings] == [2] and "Tr0ub4dor&3x" in by_value.text


def test_bad_allowlist_pattern_is_a_clear_error():
    with pytest.raises(ValueError, match="invalid secret allowlist pattern"):
        SecretDetector(allow=["(unclosed"])


@pytest.mark.parametrize("name,kind", [
    ("password", "password"), ("DB_PASS", "password"), ("dbPassword2", "password"), ("passphrase", "password"),
    ("client_secret", "token"), ("apiKey", "token"), ("X-API-KEY", "token"), ("aws_secret_access_key", "token"),
    ("SECRET_KEY_BASE", "token"), ("private_key", "token"), ("authToken", "token"),
    ("password_url", None), ("token_type", None), ("max_tokens", None), ("tokenizer", None), ("public_key", None),
    ("secret_name", None), ("author", None), ("bypass", None), ("primary_key", None), ("password_hash", None),
])
def test_names_that_hold_credentials(name, kind):
    assert assignment_kind(name) == kind


def test_entropy_separates_random_tokens_from_words():
    assert shannon_entropy("Zq8Wk3Rv9Lm2Xp4Tn6Ys1Bc") > 4.0 > shannon_entropy("aaaabbbb") + 2
    assert shannon_entropy("") == 0.0


@pytest.mark.parametrize("path,content,secret", [
    (".env", "A=1", True), ("app/.env.production", "", True), (".env.local", "", True), ("deploy/prod.env", "", True),
    (".env.example", "", False), (".env.sample", "", False), (".env.template", "", False), ("config/env.py", "", False),
    ("home/.ssh/id_rsa", "", True), ("id_ed25519", "", True), ("id_ed25519.pub", "", False), ("id_ecdsa_sk", "", True),
    ("certs/server.key", "", True), ("certs/server.pem", "", True), ("store.p12", "", True), ("app.jks", "", True),
    ("release.keystore", "", True), (".netrc", "", True), (".pgpass", "", True), (".git-credentials", "", True),
    ("infra/terraform.tfstate", "", True), ("config/master.key", "", True), ("keys.py", "", False),
    (".npmrc", "//registry.npmjs.org/:_authToken=npm_abc\n", True), (".npmrc", "save-exact=true\n", False),
    (".pypirc", "[pypi]\nusername = __token__\npassword = pypi-AgE\n", True), (".pypirc", "[distutils]\n", False),
    (".kube/config", "users:\n- name: a\n  user:\n    token: abc\n", True),
    ("deploy/cluster.kubeconfig", "users:\n- user:\n    client-key-data: LS0t\n", True),
    ("k8s/kubeconfig.yaml", "apiVersion: v1\nkind: Config\nusers:\n- user:\n    token: x\n", True),
    ("k8s/deployment.yaml", "apiVersion: apps/v1\nkind: Deployment\n", False),
    ("home/.aws/credentials", "[default]\n", True),
    ("gcp/sa.json", '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMII"}', True),
    ("client.json", '{"installed": {"client_id": "x", "client_secret": "GOCSPX-abcdefgh12"}}', True),
    ("package.json", '{"name": "x", "private": true}', False),
    ("home/.docker/config.json", '{"auths": {"registry": {"auth": "dXNlcjpwYXNz"}}}', True),
])
def test_secret_files_by_name_and_content(path, content, secret):
    assert (secret_file_reason(path, content) is not None) == secret


@pytest.mark.parametrize("glob,path,matches", [
    ("tests/fixtures/**", "tests/fixtures/a/b.py", True), ("tests/fixtures/**", "src/tests/fixtures/a.py", False),
    ("**/fixtures/*.pem", "x/y/fixtures/c.pem", True), ("*.pem", "deep/dir/c.pem", True), ("*.pem", "c.pem.txt", False),
    ("docs/*.md", "docs/a/b.md", False), ("docs/?.md", "docs/a.md", True),
])
def test_allowlist_path_globs(glob, path, matches):
    assert bool(glob_pattern(glob).match(path)) == matches


def _doc(path: str, content: str, title: str = "") -> Document:
    return Document(id=f"s:{path}", source="s", path=path, content=content, version="blob1", access=Access(),
                    title=title or path)


def test_screen_redacts_documents_skips_secret_files_and_keeps_versions():
    token = "glpat-Xk3v9Rq2Lw8Ps6Ty1Zb4"
    docs = [_doc("app.py", f"TOKEN = '{token}'\n"), _doc(".env", "A=1\n"), _doc("plain.py", "x = 1\n"),
            _doc("tests/fixtures/key.py", f"TOKEN = '{token}'\n"), _doc("PROJ-1", "see", title=f"leaked {token}")]
    screened = SecretScreen(allow_paths=["tests/fixtures/**"]).screen(docs)
    by_path = {d.path: d for d in screened.documents}
    assert by_path["app.py"].content == "TOKEN = '[REDACTED:gitlab-token]'\n" and by_path["app.py"].version == "blob1"
    assert by_path["plain.py"] is docs[2]
    assert token in by_path["tests/fixtures/key.py"].content  # exempt by the path allowlist
    assert by_path["PROJ-1"].title == "leaked [REDACTED:gitlab-token]"
    assert screened.skipped == [Skipped("s", ".env", SkipReason.SECRET_FILE, "environment file (.env)")]
    assert screened.skipped_ids == ["s:.env"]
    assert [(f.rule, f.line) for f in screened.findings["s:PROJ-1"]] == [("gitlab-token", 0)]


def test_screen_fails_closed_when_the_scan_breaks(monkeypatch):
    screen = SecretScreen()

    def broken(text):
        raise RuntimeError("boom")
    monkeypatch.setattr(screen.detector, "redact", broken)
    screened = screen.screen([_doc("a.py", "x = 1\n")])
    assert screened.documents == [] and screened.skipped[0].reason == SkipReason.SECRET_FILE
    assert "secret scan failed" in screened.skipped[0].detail


def test_screen_logs_rule_path_and_line_but_never_the_secret(caplog):
    secrets = [secret for _, _, secret in TRUE_POSITIVES]
    text = "\n".join(template.format(s=secret) for _, template, secret in TRUE_POSITIVES)
    with caplog.at_level(logging.DEBUG):
        screened = SecretScreen().screen([_doc("leaky.py", text), _doc(".env", "\n".join(secrets))])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "s:leaky.py" in logged and "github-token line" in logged and "s:.env" in logged
    assert not [s for s in secrets if s in logged or s[:12] in logged]
    assert not [s for s in secrets if s in screened.documents[0].content]
    assert len(MARKER_PATTERN.findall(screened.documents[0].content)) == len(TRUE_POSITIVES)


@pytest.mark.parametrize("hostile", [
    "password=" * 110_000, "-----BEGIN RSA PRIVATE KEY-----\n" * 30_000, "eyJ" * 330_000, "ghp_" + "a1" * 500_000,
    "key" * 330_000, "://:" * 250_000, 'token = "' + "\\x" * 500_000, "Password=;" * 100_000, "a" * 1_000_000,
    "password = 'Zk9q2Lw7Xr3p'\n" * 40_000,
    # one long line full of the context rules' anchors (each hit used to search for its line's end)
    "mysql -p " * 110_000, "pass " * 200_000, "docker login " * 80_000, "-u a:" * 200_000,
    "auth(" + "'a', " * 200_000, "password is " * 85_000, '("password", ' * 80_000, "ENV A " * 160_000,
])
def test_hostile_megabyte_inputs_are_scanned_in_linear_time(hostile):
    """Every rule is bounded: a megabyte built to make regexes backtrack takes well under a second of CPU
    here (this process's CPU time, not wall time: the test machine is shared; a quadratic rule takes minutes)."""
    import time

    started = time.process_time()
    result = SecretDetector().redact(hostile)
    assert time.process_time() - started < 10
    assert result.text.count("\n") == hostile.count("\n")
