"""The deployment files parse, name every service and role, and never hold a secret value."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

INFRA = Path(__file__).parents[2] / "infra"
COMPOSE = INFRA / "compose.yaml"
CHART = INFRA / "helm" / "cairn"
SERVICES = {"api", "worker-sync", "worker-embed", "worker-maintenance", "beat", "redis", "postgres", "qdrant"}
CAIRN_SERVICES = {"api", "worker-sync", "worker-embed", "worker-maintenance", "beat"}
# A value that looks like a credential: a password in a URL, or a secret-named key with a literal value.
URL_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
SECRET_KEY = re.compile(r"(password|secret|token|api_key|apikey)", re.IGNORECASE)
TEMPLATE_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.DOTALL)
BLOCK_OPENERS = ("if ", "range ", "with ", "define ", "block ")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (dotted key path, scalar) pair of a parsed YAML document."""
    if isinstance(node, dict):
        return [pair for key, value in node.items() for pair in walk(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [pair for i, value in enumerate(node) for pair in walk(value, f"{path}[{i}]")]
    return [(path, node)]


@pytest.mark.parametrize("path", sorted(p for p in INFRA.rglob("*.yaml") if "templates" not in p.parts),
                         ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert yaml.safe_load(path.read_text(encoding="utf-8")) is not None


def test_compose_has_every_service_with_an_image_or_build() -> None:
    services = compose()["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
    assert services["qdrant"]["image"].startswith("qdrant/qdrant")


def test_compose_cairn_services_share_the_distributed_settings() -> None:
    services = compose()["services"]
    for name in CAIRN_SERVICES:
        env = services[name]["environment"]
        assert env["CAIRN_VECTOR_BACKEND"] == "qdrant", name
        assert env["CAIRN_QDRANT_URL"] and env["CAIRN_CELERY_BROKER_URL"], name
        env_files = [f["path"] if isinstance(f, dict) else f for f in services[name]["env_file"]]
        assert "./cairn.env" in env_files, name  # where CAIRN_DATABASE_URL comes from
    assert "cairn serve" in " ".join(services["api"]["command"])


@pytest.mark.parametrize("queue", ["sync", "embed", "maintenance"])
def test_compose_runs_one_worker_per_queue(queue: str) -> None:
    service = compose()["services"][f"worker-{queue}"]
    command = " ".join(service["command"])
    assert "celery -A workers.celery_app" in command and f"worker -Q {queue} -c " in command
    assert service["healthcheck"]["test"]


def test_compose_long_running_services_have_healthchecks() -> None:
    services = compose()["services"]
    for name in SERVICES - {"beat", "qdrant"}:  # beat has no endpoint; the qdrant image has no client
        assert services[name].get("healthcheck"), name


def test_compose_holds_no_literal_secret() -> None:
    data = compose()
    for path, value in walk(data):
        if not isinstance(value, str):
            continue
        assert not URL_PASSWORD.search(value), path
        parent, _, key = path.rpartition(".")
        if parent.endswith(".environment") and SECRET_KEY.search(key) and not key.endswith("_FILE"):
            pytest.fail(f"{path} sets a secret-looking variable literally")
    assert data["secrets"]["postgres_password"] == {"file": "./secrets/postgres_password"}
    assert "POSTGRES_PASSWORD" not in data["services"]["postgres"]["environment"]


def test_env_example_has_no_real_secret() -> None:
    for line in (INFRA / "cairn.env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert not SECRET_KEY.search(key) or value == "", key
            assert "CHANGE-ME" in value or not URL_PASSWORD.search(value), key


def test_chart_metadata_and_values() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2" and chart["name"] == "cairn" and chart["version"]
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert set(values["workers"]) == {"sync", "embed", "maintenance"}
    assert values["workers"]["embed"]["autoscaling"]["enabled"] is True
    assert values["settings"]["CAIRN_VECTOR_BACKEND"] == "qdrant"
    for name, secret in values["secrets"].items():
        assert set(secret) <= {"existingSecret", "key"}, name  # references only, never a value
    for path, value in walk(values):
        assert not (isinstance(value, str) and URL_PASSWORD.search(value)), path


def template_files() -> list[Path]:
    return sorted((CHART / "templates").iterdir())


@pytest.mark.parametrize("path", template_files(), ids=lambda p: p.name)
def test_chart_template_blocks_are_balanced(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert source.count("{{") == source.count("}}")
    depth = 0
    for action in TEMPLATE_ACTION.findall(source):
        if action.startswith("/*"):
            continue
        if action.startswith(BLOCK_OPENERS):
            depth += 1
        elif action == "end":
            depth -= 1
            assert depth >= 0, f"unmatched end in {path.name}"
    assert depth == 0, f"unclosed block in {path.name}"


def test_chart_templates_reference_only_declared_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for path in template_files():
        for ref in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", path.read_text(encoding="utf-8")):
            node: Any = values
            for part in ref.strip(".").split("."):
                assert isinstance(node, dict) and part in node, f"{path.name}: .Values{ref}"
                node = node[part]


def test_chart_has_every_role_and_no_literal_secret() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in template_files())
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim", "ConfigMap"):
        assert f"kind: {kind}" in text, kind
    assert "kind: Secret\n" not in text  # secrets are created outside the chart and only referenced
    assert "secretKeyRef" in text and "secretRef" in text
    assert "beat" in text and "worker -Q {{ $queue }}" in text


def docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], check=False, capture_output=True,
                          timeout=30).returncode == 0


@pytest.mark.skipif(not docker_compose_available(), reason="the docker compose plugin is not installed here")
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    infra = tmp_path / "infra"
    infra.mkdir()
    shutil.copy(COMPOSE, infra / "compose.yaml")
    shutil.copy(INFRA / "cairn.env.example", infra / "cairn.env")
    (infra / "secrets").mkdir()
    (infra / "secrets" / "postgres_password").write_text("test\n")
    proc = subprocess.run(["docker", "compose", "-f", str(infra / "compose.yaml"), "config", "-q"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed (no Debian or PyPI package ships it)")
def test_helm_lint_and_template() -> None:
    for args in (["lint", str(CHART)], ["template", "cairn", str(CHART)]):
        proc = subprocess.run(["helm", *args], check=False, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
