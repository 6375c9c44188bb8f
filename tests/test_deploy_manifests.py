"""The deployment files (deploy/, ray_cluster.yaml) say what the bridge relies on, and nothing secret.

Every YAML and JSON file parses; the cluster configs pass Ray's own autoscaler validation (the one
`ray up` and KubeRay's autoscaler run); the Deployment and Service pass Kubernetes' schemas
(kubernetes-validate, strict). No JSON schema of KubeRay's RayCluster CRD ships in a PyPI or npm
package, so the RayCluster is checked through what Ray's autoscaler derives from it, plus the fields
below.
"""

from __future__ import annotations

import configparser
import copy
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import prepare_config, validate_config

from actors.config import Settings
from api.local_ray import RAY_NODE_ENV
from api.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
# What the bridge's pods and containers hold as secrets: always by reference, never a literal.
SECRET_ENV = {"WHATSAPP_BRIDGE_API_KEY", "DATABASE_URL", "REDIS_URL", "RAY_AUTH_TOKEN", "REDIS_PASSWORD"}
# Environment names that are Ray's, PgBouncer's, PostgreSQL's or Redis's rather than our Settings.
FOREIGN_ENV = re.compile(r"^(RAY_|REPORTER_|NEONIZE_|POSTGRES_|DB_|AUTH_|REDIS_PASSWORD$|AUTOSCALER_)")
SESSIONS_PER_WORKER = 150


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def deploy_files(*suffixes: str) -> list[Path]:
    found = [p for p in sorted(DEPLOY.rglob("*")) if p.is_file() and p.suffix in suffixes]
    if ".yaml" in suffixes:
        found.append(REPO / "ray_cluster.yaml")
    return found


def kuberay() -> dict[str, dict[str, Any]]:
    """deploy/kuberay's objects by kind, in the kustomization's namespace."""
    kustomization = load_yaml(DEPLOY / "kuberay" / "kustomization.yaml")[0]
    objects: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in load_yaml(DEPLOY / "kuberay" / name):
            doc.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
            objects[doc["kind"]] = doc
    return objects


def start_resources(params: dict[str, str]) -> dict[str, Any]:
    """`rayStartParams.resources` as KubeRay reads it (outer quotes dropped, then JSON)."""
    parsed: dict[str, Any] = json.loads(params["resources"].strip("'\"` "))
    return parsed


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


# ---------------------------------------------------------------------------------------- parsing


def test_every_file_parses() -> None:
    yamls = deploy_files(".yaml", ".yml")
    assert {p.name for p in yamls} >= {
        "ray_cluster.yaml",
        "ray-onprem.yaml",
        "raycluster.yaml",
        "compose.yaml",
    }
    for path in yamls:
        assert load_yaml(path), path
    for path in deploy_files(".json"):
        json.loads(path.read_text())
    for path in deploy_files(".ini", ".service"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(path.read_text())
        assert parser.sections(), path
    subprocess.run(["sh", "-n", str(DEPLOY / "entrypoint.sh")], check=True)


LITERAL_PASSWORD_URL = re.compile(r"://[^/\s:@'\"]+:(?!\$\{|\.\.\.@)[^@\s/'\"]+@")
# NAME=value or NAME: value for a secret-looking environment name or config key.
SECRET_ASSIGNMENT = re.compile(
    r"(?<![{$\w])([A-Z_]*(?:API_KEY|PASSWORD|TOKEN|SECRET)[A-Z_]*|password)"
    r"[ \t]*[=:][ \t]*([^\s#,}]*)"
)
# Empty, a placeholder, or a reference ($VAR, ${VAR:?}, "$$VAR" in compose).
NOT_A_SECRET = re.compile(r"""^(|\.\.\.|['"]?\$.*|\{.*|token)$""")


def secret_literals(text: str) -> list[str]:
    found = [m.group(0) for m in LITERAL_PASSWORD_URL.finditer(text)]
    found += [
        f"{name}={value}" for name, value in SECRET_ASSIGNMENT.findall(text) if not NOT_A_SECRET.match(value)
    ]
    return found


def test_no_secret_literal_anywhere() -> None:
    files = [
        *deploy_files(".yaml", ".yml", ".json", ".ini", ".service", ".sh", ".example"),
        DEPLOY / "Dockerfile",
    ]
    for path in files:
        assert not secret_literals(path.read_text()), path
        for doc in load_yaml(path) if path.suffix == ".yaml" else []:
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                pytest.fail(f"{path}: a Secret with its data in the repository")


def test_the_secret_checks_catch_a_literal() -> None:
    """The patterns above are not vacuous: they flag what they are for, and only that."""
    assert secret_literals("DATABASE_URL=postgresql://bridge:hunter2@db/bridge")
    assert secret_literals("WHATSAPP_BRIDGE_API_KEY=abc123")
    assert secret_literals("    REDIS_PASSWORD: hunter2")
    assert secret_literals("password = hunter2")
    assert not secret_literals(
        "DATABASE_URL: postgresql://bridge:${POSTGRES_PASSWORD:?x}@pgbouncer:6432/bridge"
    )
    assert not secret_literals("WHATSAPP_BRIDGE_API_KEY=...\nRAY_AUTH_TOKEN=\nsecretKeyRef: {name: x}")


# ---------------------------------------------------------------------------------- Ray cluster YAMLs


def test_cloud_cluster_autoscales_on_wa_session() -> None:
    config = load_yaml(REPO / "ray_cluster.yaml")[0]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["wa_session"] == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["resources"]["wa_session"] == SESSIONS_PER_WORKER for t in workers)
    assert all(0 <= t["min_workers"] < t["max_workers"] <= config["max_workers"] for t in workers)
    assert config["idle_timeout_minutes"] > 0
    # What `ray up` runs on it; a misspelt field is refused by the same check.
    validate_config(prepare_config(copy.deepcopy(config)))
    broken = copy.deepcopy(config)
    broken["available_node_types"]["sessions"]["max_worker"] = 3
    with pytest.raises(Exception, match="max_worker"):
        validate_config(prepare_config(broken))


def test_onprem_cluster_declares_capacity_in_ray_start() -> None:
    config = load_yaml(DEPLOY / "ray-onprem.yaml")[0]
    assert config["provider"]["type"] == "local" and "available_node_types" not in config
    validate_config(prepare_config(copy.deepcopy(config)))
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    assert """--resources='{"wa_session": 0}'""" in head
    assert f"""--resources='{{"wa_session": {SESSIONS_PER_WORKER}}}'""" in worker


def ray_start_params(command: str) -> dict[str, Any]:
    """The options of the `ray start` in a shell command, parsed as `ray start` parses them."""
    from ray.scripts.scripts import start

    words = shlex.split(command.rsplit(";", 1)[-1].replace("$$", "$"))
    at = words.index("start")
    assert words[at - 1].endswith("ray")
    params: dict[str, Any] = start.make_context("start", words[at + 1 :]).params
    return params


def test_cloud_and_compose_nodes_start_as_ray_parses_them() -> None:
    cloud = load_yaml(REPO / "ray_cluster.yaml")[0]
    head = ray_start_params(cloud["head_start_ray_commands"][-1])
    worker = ray_start_params(cloud["worker_start_ray_commands"][-1])
    assert head["head"] and head["system_config"]["health_check_failure_threshold"] == 5
    assert head["object_store_memory"] == worker["object_store_memory"] == 200 * 1024 * 1024
    # On a cloud provider the launcher passes each node type's resources itself.
    assert head["resources"] == worker["resources"] == "{}"
    services = load_yaml(DEPLOY / "compose.yaml")[0]["services"]
    head = ray_start_params(services["ray-head"]["command"][0])
    worker = ray_start_params(services["ray-worker"]["command"][0])
    assert json.loads(head["resources"]) == {"wa_session": 0} and head["num_cpus"] == 0
    assert json.loads(worker["resources"]) == {"wa_session": SESSIONS_PER_WORKER}
    assert head["system_config"]["health_check_failure_threshold"] == 5


@pytest.mark.parametrize("path", [REPO / "ray_cluster.yaml", DEPLOY / "ray-onprem.yaml"])
def test_cluster_nodes_get_the_lean_settings_and_gcs_fault_tolerance(path: Path) -> None:
    config = load_yaml(path)[0]
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        text = " ".join(commands)
        for name, value in RAY_NODE_ENV.items():
            assert f"{name}={value}" in text, f"{path}: {name}"
        assert "RAY_gcs_rpc_server_reconnect_timeout_s=600" in text
        assert "--object-store-memory=209715200" in text and "ulimit -n 65536" in text
    head = " ".join(config["head_start_ray_commands"])
    assert re.search(r"RAY_REDIS_ADDRESS=\S+:\d+ RAY_external_storage_namespace=\S+", head)
    assert "health_check_failure_threshold" in head and "--system-config" in head


# ---------------------------------------------------------------------------------------- KubeRay


def test_raycluster_autoscales_with_a_head_without_sessions() -> None:
    cluster = kuberay()["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["rayVersion"] == __import__("ray").__version__
    head = spec["headGroupSpec"]["rayStartParams"]
    assert start_resources(head) == {"wa_session": 0} and head["num-cpus"] == "0"
    groups = spec["workerGroupSpecs"]
    for group in groups:
        assert start_resources(group["rayStartParams"]) == {"wa_session": SESSIONS_PER_WORKER}
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] > group["minReplicas"]
    # The CRD types every rayStartParams value as a string.
    for params in [head, *(g["rayStartParams"] for g in groups)]:
        assert all(isinstance(v, str) for v in params.values())

    # What Ray's autoscaler makes of it on KubeRay, validated as `ray up` would.
    derived = _derive_autoscaling_config_from_ray_cr(copy.deepcopy(cluster))
    validate_config(derived)
    types = derived["available_node_types"]
    assert types["headgroup"]["resources"]["wa_session"] == 0
    assert types[groups[0]["groupName"]]["resources"]["wa_session"] == SESSIONS_PER_WORKER
    assert types[groups[0]["groupName"]]["max_workers"] == groups[0]["maxReplicas"]


def test_raycluster_keeps_gcs_in_external_redis_and_the_lean_settings() -> None:
    spec = kuberay()["RayCluster"]["spec"]
    fault_tolerance = spec["gcsFaultToleranceOptions"]
    assert re.fullmatch(r"[\w.-]+:\d+", fault_tolerance["redisAddress"])
    assert "value" not in fault_tolerance.get("redisPassword", {})
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for template in templates:
        for container in template["spec"]["containers"]:
            env = {name: item.get("value") for name, item in env_of(container).items()}
            for name, value in RAY_NODE_ENV.items():
                assert env.get(name) == value, (container["name"], name)
            assert env["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"


def test_api_deployment_and_service() -> None:
    objects = kuberay()
    deployment, service = objects["Deployment"], objects["Service"]
    for obj in (deployment, service):
        kubernetes_validate.validate(obj, "1.30", strict=True)
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = env_of(container)
    assert str(ports["http"]) == env["WHATSAPP_BRIDGE_PORT"]["value"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert container[probe]["httpGet"]["port"] in ("http", ports["http"])
    # The API joins the cluster through the head's service (KubeRay names it <cluster>-head-svc).
    assert env["RAY_ADDRESS"]["value"] == f"{objects['RayCluster']['metadata']['name']}-head-svc:6379"
    for name in SECRET_ENV & env.keys():
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"], name
    assert {"WHATSAPP_BRIDGE_API_KEY", "DATABASE_URL", "REDIS_URL"} <= env.keys()
    for name in env:
        assert name in SETTINGS_ENV or FOREIGN_ENV.match(name), f"{name} is no setting of ours"
    # The Service reaches these pods on the API's port.
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", ports["http"])


def test_kubernetes_validation_is_strict() -> None:
    service = copy.deepcopy(kuberay()["Service"])
    service["spec"]["sellector"] = service["spec"].pop("selector")
    with pytest.raises(Exception, match="sellector"):
        kubernetes_validate.validate(service, "1.30", strict=True)


# ---------------------------------------------------------------------------- compose and systemd


def test_compose_services_and_their_environment() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")[0]
    services = compose["services"]
    assert set(services) >= {"postgres", "pgbouncer", "redis", "ray-head", "ray-worker", "api"}
    api = services["api"]["environment"]
    for name in api:
        assert name in SETTINGS_ENV or FOREIGN_ENV.match(name), f"{name} is no setting of ours"
    assert "@pgbouncer:6432/" in api["DATABASE_URL"] and "@redis:6379/" in api["REDIS_URL"]
    assert api["RAY_ADDRESS"] == "ray-head:6379"
    for name in SECRET_ENV & api.keys():
        assert "${" in api[name], f"{name} must come from the env file"
    head = " ".join(services["ray-head"]["command"])
    worker = " ".join(services["ray-worker"]["command"])
    assert """--resources='{"wa_session": 0}'""" in head and "--head" in head
    assert f"""--resources='{{"wa_session": {SESSIONS_PER_WORKER}}}'""" in worker
    assert services["ray-head"]["environment"]["RAY_REDIS_ADDRESS"] == "redis:6379"
    for name in ("ray-head", "ray-worker", "api"):
        env = services[name]["environment"]
        assert all(env.get(k) == v for k, v in RAY_NODE_ENV.items()), name
        assert services[name]["ulimits"]["nofile"]["soft"] == 65536
    # Every ${VAR} the file needs is in the example env file.
    needed = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    example = {
        line.split("=")[0]
        for line in (DEPLOY / "compose.env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert needed <= example


def test_pgbouncer_allows_what_our_clients_do_in_transaction_mode() -> None:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(DEPLOY / "pgbouncer" / "pgbouncer.ini")
    bouncer = ini["pgbouncer"]
    assert bouncer["pool_mode"] == "transaction"
    assert int(bouncer["max_prepared_statements"]) > 0  # asyncpg's named statements
    assert "search_path" in bouncer["track_extra_parameters"]  # whatsmeow's options=-c search_path


def unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's keys, every value of a repeated key kept, continuation lines joined."""
    found: dict[str, list[str]] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("name", ["ray-head", "ray-worker", "whatsapp-bridge-api"])
def test_systemd_units(name: str) -> None:
    found = unit(DEPLOY / "systemd" / f"{name}.service")
    assert found["TasksMax"] == ["infinity"] and found["LimitNOFILE"] == ["65536"]
    assert found["Restart"] == ["always"]
    environment = " ".join(found.get("Environment", []))
    if name.startswith("ray-"):
        for key, value in RAY_NODE_ENV.items():
            assert f"{key}={value}" in environment, key
        sessions = 0 if name == "ray-head" else SESSIONS_PER_WORKER
        assert f'"--resources={{\\"wa_session\\": {sessions}}}"' in found["ExecStart"][0]
    assert "Requires" not in found  # a head restart must not stop the API or a worker


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_units() -> None:
    units = sorted(str(p) for p in (DEPLOY / "systemd").glob("*.service"))
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, cwd=DEPLOY)
    # Here the bridge is not installed under /opt: that is the only complaint allowed.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/opt/whatsapp-bridge/bin/" not in line
    ]
    assert not problems, problems


# ---------------------------------------------------------------------------------------- Grafana


def exported_metric_names() -> set[str]:
    """Every sample name api/metrics.py exports (counters as _total, histograms as _bucket, ...)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(
            {f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count", "_created")}
        )
    return names


def test_grafana_queries_use_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "whatsapp-bridge.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries = [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    used = {m for text in exprs + queries for m in re.findall(r"\b(wab_\w+)", text)}
    exported = exported_metric_names()
    assert used and used <= exported, used - exported
    # The operator's core questions each have a panel.
    assert {"wab_sessions", "wab_sessions_pending", "wab_http_requests_total", "wab_ws_clients"} <= used
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
