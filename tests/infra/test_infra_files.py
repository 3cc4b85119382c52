"""The deployment files parse, name every service and role, never hold a secret value, name only real settings
and commands, and run the catalog migration before anything else starts. Helm templates are rendered by
tests/infra/helm_render.py (there is no helm binary here)."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_render import Renderer

INFRA = Path(__file__).parents[2] / "infra"
COMPOSE = INFRA / "compose.yaml"
CHART = INFRA / "helm" / "cairn"
SERVICES = {"migrate", "api", "api-replica", "worker-sync", "worker-embed", "worker-maintenance", "beat", "redis", "postgres",
            "qdrant"}
CAIRN_SERVICES = {"migrate", "api", "api-replica", "worker-sync", "worker-embed", "worker-maintenance", "beat"}
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
    for name in SERVICES - {"beat", "qdrant", "migrate"}:  # beat has no endpoint; the qdrant image has no
        # client; migrate is a one-shot
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
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim", "ConfigMap", "Job"):
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


# -- every file, every CAIRN_* name, the rendered chart ---------------------------------------------------

# CAIRN_* names in infra/ that are not settings, and why.
NOT_SETTINGS = {"CAIRN_IMAGE": "compose.yaml interpolation: the image every Cairn service runs"}
CAIRN_NAME = re.compile(r"\bCAIRN_[A-Z0-9_]*[A-Z0-9]\b")


def setting_names() -> set[str]:
    from indexer.settings import Settings

    return {f"CAIRN_{name.upper()}" for name in Settings.model_fields}


def infra_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.is_file())


def chart(values: dict[str, Any] | None = None) -> Renderer:
    return Renderer(CHART, values)


def manifests(renderer: Renderer) -> list[dict[str, Any]]:
    """Every object the chart renders (each template through the renderer, then YAML)."""
    docs: list[dict[str, Any]] = []
    for path in template_files():
        if path.suffix == ".yaml":
            docs += [d for d in yaml.safe_load_all(renderer.render(path.name)) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container_env(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod_spec["containers"][0].get("env", [])}


def test_every_file_under_infra_is_read_by_these_tests() -> None:
    """A new kind of file under infra/ needs a check here before it ships."""
    read = {".yaml": "YAML or a rendered template", ".tpl": "template defines", ".txt": "NOTES, rendered",
            ".md": "CAIRN_* names", ".example": "KEY=VALUE lines", "Dockerfile": "CAIRN_* names",
            ".gitignore": "the local secret copies"}
    for path in infra_files():
        assert path.suffix in read or path.name in read, f"{path.relative_to(INFRA)} is checked by no test"
        if path.suffix == ".example":
            for line in path.read_text(encoding="utf-8").splitlines():
                assert not line or line.startswith("#") or re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), line
        if path.name == ".gitignore":  # the copies README.md tells operators to make never get committed
            assert {"cairn.env", "secrets/"} <= set(path.read_text(encoding="utf-8").splitlines())


def test_every_cairn_name_in_infra_is_a_setting() -> None:
    known = setting_names() | set(NOT_SETTINGS)
    for path in infra_files():
        unknown = set(CAIRN_NAME.findall(path.read_text(encoding="utf-8"))) - known
        assert not unknown, f"{path.relative_to(INFRA)} names {sorted(unknown)}: not in indexer/settings.py"
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert set(values["settings"]) <= setting_names()  # the ConfigMap's keys


def test_compose_runs_the_migration_before_every_cairn_service() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["cairn", "db", "upgrade"] and migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in CAIRN_SERVICES - {"migrate"}:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_compose_gives_cairn_services_time_to_stop() -> None:
    from indexer.settings import Settings

    services = compose()["services"]
    drain = Settings.model_fields["shutdown_grace_seconds"].default
    for name in ("api", "worker-sync", "worker-embed", "worker-maintenance"):
        assert _seconds(services[name]["stop_grace_period"]) > drain, name  # docker's default is 10 s
    assert services["worker-embed"]["environment"]["CAIRN_EMBED_THREADS"] == "1"


@pytest.mark.parametrize("values", [
    {},
    {"beat": {"enabled": False}, "persistence": {"data": {"enabled": False}}},
    {"secrets": {"qdrant": {"existingSecret": "qdrant-key"}, "connectors": {"existingSecret": "tokens"}},
     "workers": {"embed": {"autoscaling": {"enabled": False}}}},
], ids=["defaults", "no-beat-no-volume", "optional-secrets"])
def test_chart_renders_kubernetes_objects(values: dict[str, Any]) -> None:
    merged = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    _merge(merged, values)
    docs = manifests(chart(merged))
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"].startswith("cairn-cairn"), doc
    deployments = by_kind(docs, "Deployment")
    assert ("cairn-cairn-beat" in deployments) is merged["beat"]["enabled"]
    assert ("cairn-cairn-data" in by_kind(docs, "PersistentVolumeClaim")) is merged["persistence"]["data"]["enabled"]
    for name, deployment in deployments.items():
        env = container_env(deployment["spec"]["template"]["spec"])
        assert env["CAIRN_DATABASE_URL"]["secretKeyRef"]["name"] == "cairn-database", name
        assert ("CAIRN_QDRANT_API_KEY" in env) is bool(merged["secrets"]["qdrant"]["existingSecret"]), name


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def test_chart_embed_workers_use_one_onnx_thread_per_pool_process() -> None:
    docs = manifests(chart())
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["workers"]
    embed = by_kind(docs, "Deployment")["cairn-cairn-worker-embed"]["spec"]["template"]["spec"]
    assert container_env(embed)["CAIRN_EMBED_THREADS"] == "1"
    assert values["embed"]["concurrency"] <= int(values["embed"]["resources"]["requests"]["cpu"])
    for queue in ("sync", "maintenance"):  # only embed is CPU-bound enough to need it
        spec = by_kind(docs, "Deployment")[f"cairn-cairn-worker-{queue}"]["spec"]["template"]["spec"]
        assert "CAIRN_EMBED_THREADS" not in container_env(spec)


def test_chart_pods_roll_when_the_config_changes() -> None:
    renderer = chart()
    checksum = hashlib.sha256(renderer.render("configmap.yaml").encode()).hexdigest()
    for name, deployment in by_kind(manifests(renderer), "Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("checksum/config") == checksum, name
        grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        assert name.endswith("beat") or grace >= 60, name


def test_chart_migrates_the_catalog_in_a_hook_before_the_pods() -> None:
    job = by_kind(manifests(chart()), "Job")["cairn-cairn-migrate"]
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in hooks["helm.sh/hook-delete-policy"]
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["cairn", "db", "upgrade"] and spec["restartPolicy"] == "Never"
    # A pre-install hook runs before the release's ConfigMap and volume exist: it may use neither.
    assert "envFrom" not in container and "volumes" not in spec and "volumeMounts" not in container
    assert container_env(spec)["CAIRN_DATABASE_URL"]["secretKeyRef"] == {"name": "cairn-database", "key": "database-url"}


def _resolve(words: list[str]) -> None:
    """Walk `cairn WORDS` through the real CLI: every subcommand and --option must exist."""
    import typer

    from api.cli import app

    command: Any = typer.main.get_command(app)
    for word in words:
        if word.startswith("--"):
            names = {opt for p in command.params for opt in getattr(p, "opts", [])}
            assert word.split("=")[0] in names, f"cairn {' '.join(words)}: no option {word} on {command.name}"
        elif hasattr(command, "commands"):  # a group (typer ships its own click classes)
            assert word in command.commands, f"cairn {' '.join(words)}: no command {word!r}"
            command = command.commands[word]


def test_notes_and_readme_name_real_cairn_commands() -> None:
    texts = [chart().render("NOTES.txt"), (INFRA / "README.md").read_text(encoding="utf-8")]
    found = 0
    for text in texts:
        for line in text.splitlines():
            # `cairn ...` at the start of a command line (after VAR=value), after `kubectl exec ... --`, in backticks
            for match in re.finditer(r"(?:^\s*(?:[A-Z_]+=\S+\s+)*|-- |`)cairn ((?:[a-z][\w-]*|--[\w-]+)"
                                     r"(?: (?:[a-z][\w-]*|--[\w-]+(?:=\S+)?|/\S+|<[^>]+>))*)", line):
                words = [w for w in match.group(1).split() if not w.startswith(("/", "<"))]
                _resolve(words)
                found += 1
    assert found >= 6


def test_compose_api_nodes_advertise_urls_the_other_node_reaches() -> None:
    """The lease holder's CAIRN_NODE_URL is where replicas forward: each node names itself by its service name
    and the port it serves on, on the shared data volume (a takeover needs the owner's copy of the index)."""
    services = compose()["services"]
    for name in ("api", "api-replica"):
        service = services[name]
        port = service["command"][service["command"].index("--port") + 1]
        assert service["environment"]["CAIRN_NODE_URL"] == f"http://{name}:{port}", name
        assert "cairn-data:/data" in service["volumes"], name
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"]), name
    assert services["api-replica"]["profiles"] == ["replica"]  # opt-in: one node is the default
    assert "profiles" not in services["api"]


def test_chart_api_pods_advertise_their_own_pod_ip() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    _merge(values, {"api": {"replicas": 2}})
    api = by_kind(manifests(chart(values)), "Deployment")["cairn-cairn-api"]
    assert api["spec"]["replicas"] == 2
    env = api["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    # Kubernetes expands $(POD_IP) only from a variable defined earlier in the same list.
    assert names.index("POD_IP") < names.index("CAIRN_NODE_URL")
    assert env[names.index("POD_IP")]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env[names.index("CAIRN_NODE_URL")]["value"] == f"http://$(POD_IP):{values['api']['port']}"
    assert values["persistence"]["data"]["accessModes"] == ["ReadWriteMany"]
