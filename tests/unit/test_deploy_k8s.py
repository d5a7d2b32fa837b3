"""deploy/k8s/ against Kubernetes' schemas and against what metricgate really reads, parses and
serves: kinds, names, ports, probes, secrets and settings (no cluster here)."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
from deploy_support import (
    DEPLOY,
    app_get_paths,
    assert_known_env,
    load_all,
    parse_command,
    settings_from,
)

K8S = DEPLOY / "k8s"
# The oldest Kubernetes release still commonly run; every field used must exist there.
K8S_VERSION = "1.29.0"
OPTIONAL = {"secret.example.yaml", "seaweedfs.yaml"}  # applied by hand, see kustomization.yaml


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            found[key] = doc
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return _manifests()


def _pod(manifests: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return manifests[(kind, name)]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _container_env(
    container: dict[str, Any], configmap: dict[str, str], secret: dict[str, str]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmap if "configMapRef" in source else secret)
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[item["name"]] = secret[ref["key"]] if ref else item["value"]
    return env


@pytest.fixture(scope="module")
def configmap(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    return manifests[("ConfigMap", "metricgate")]["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def secret(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    return manifests[("Secret", "metricgate")]["stringData"]  # type: ignore[no-any-return]


def test_every_manifest_validates_against_the_kubernetes_schema(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for key, doc in manifests.items():
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{key}: {str(exc).splitlines()[0]}")


def test_kustomization_lists_every_manifest_but_the_optional_ones() -> None:
    [kustomization] = load_all(K8S / "kustomization.yaml")
    assert kustomization["namespace"] == "metricgate"
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - OPTIONAL
    # The template with placeholders is never applied by `kubectl apply -k`.
    assert "secret.example.yaml" not in listed


def test_workloads_run_the_real_commands(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    gateway = parse_command(
        _pod(manifests, "Deployment", "metricgate-gateway")["containers"][0]["args"]
    )
    flusher = parse_command(
        _pod(manifests, "Deployment", "metricgate-flusher")["containers"][0]["args"]
    )
    migrate = parse_command(_pod(manifests, "Job", "metricgate-migrate")["containers"][0]["args"])
    assert gateway.command == "serve" and gateway.embedded_flusher is False
    assert flusher.command == "flush"
    assert migrate.command == "migrate"


def test_settings_exist_in_config_and_are_valid(
    manifests: dict[tuple[str, str], dict[str, Any]],
    configmap: dict[str, str],
    secret: dict[str, str],
) -> None:
    assert_known_env(set(configmap), "the ConfigMap")
    assert_known_env(set(secret), "the Secret template")
    for kind, name in (
        ("Deployment", "metricgate-gateway"),
        ("Deployment", "metricgate-flusher"),
        ("Job", "metricgate-migrate"),
    ):
        [container] = _pod(manifests, kind, name)["containers"]
        assert_known_env({e["name"] for e in container.get("env", [])}, name)
        env = _container_env(container, configmap, secret)
        settings = settings_from(env)  # raises ConfigError on a value config.py refuses
        assert settings.postgres.url == secret["METRICGATE_DATABASE_URL"]
        assert settings.log_format == "json"


def test_secret_is_a_template_and_every_reference_resolves(
    manifests: dict[tuple[str, str], dict[str, Any]], secret: dict[str, str]
) -> None:
    for key, value in secret.items():
        assert re.search(r"<[a-z0-9-]+>", value), f"{key} must hold a <placeholder>, not a value"
    for (kind, name), doc in manifests.items():
        if kind not in ("Deployment", "StatefulSet", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "metricgate" and ref["key"] in secret, (name, ref)
            for source in container.get("envFrom", []):
                assert source.get("configMapRef", {}).get("name") == "metricgate", (name, source)


def test_urls_point_at_the_services(
    manifests: dict[tuple[str, str], dict[str, Any]], secret: dict[str, str]
) -> None:
    ports = {
        name: doc["spec"]["ports"][0]["port"]
        for (kind, name), doc in manifests.items()
        if kind == "Service"
    }
    assert f"@postgres:{ports['postgres']}/" in secret["METRICGATE_DATABASE_URL"]
    assert secret["METRICGATE_REDIS_URL"].endswith(f"@redis:{ports['redis']}/0")


def test_gateway_probes_ports_and_shutdown(
    manifests: dict[tuple[str, str], dict[str, Any]], configmap: dict[str, str]
) -> None:
    pod = _pod(manifests, "Deployment", "metricgate-gateway")
    [container] = pod["containers"]
    [port] = container["ports"]
    assert port["containerPort"] == int(configmap["METRICGATE_PORT"])
    routes = app_get_paths()
    readiness, liveness = (
        container["readinessProbe"]["httpGet"],
        container["livenessProbe"]["httpGet"],
    )
    assert readiness["path"] == "/ready" and liveness["path"] == "/health"
    assert {readiness["path"], liveness["path"]} <= routes
    assert readiness["port"] == liveness["port"] == port["name"]
    pre_stop_s = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + float(
        configmap["METRICGATE_SHUTDOWN_TIMEOUT_S"]
    )
    assert container["resources"]["requests"] and container["resources"]["limits"]
    template = manifests[("Deployment", "metricgate-gateway")]["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/path"] in routes

    service = manifests[("Service", "metricgate-gateway")]["spec"]
    assert service["ports"][0]["targetPort"] == port["name"]
    assert service["selector"].items() <= template["metadata"]["labels"].items()
    hpa = manifests[("HorizontalPodAutoscaler", "metricgate-gateway")]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "metricgate-gateway",
    }
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert configmap["METRICGATE_ARTIFACTS_URI"] == "file://" + mounts["artifacts"]


def test_flusher_grace_period_covers_the_drain(
    manifests: dict[tuple[str, str], dict[str, Any]], configmap: dict[str, str]
) -> None:
    pod = _pod(manifests, "Deployment", "metricgate-flusher")
    assert pod["terminationGracePeriodSeconds"] > float(
        configmap["METRICGATE_FLUSH_DRAIN_TIMEOUT_S"]
    )
    assert pod["containers"][0]["resources"]["limits"]["memory"]


def test_metricgate_pods_run_as_non_root_without_service_links(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for kind, name in (
        ("Deployment", "metricgate-gateway"),
        ("Deployment", "metricgate-flusher"),
        ("Job", "metricgate-migrate"),
    ):
        pod = _pod(manifests, kind, name)
        # Service links would inject variables such as METRICGATE_GATEWAY_PORT=tcp://...
        assert pod["enableServiceLinks"] is False, name
        assert (
            pod["securityContext"]["runAsNonRoot"] is True
            and pod["securityContext"]["runAsUser"] == 10001
        )


def test_redis_keeps_an_append_only_file_on_a_volume(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    redis = manifests[("StatefulSet", "redis")]
    [container] = redis["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "redis:7"
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] in ("everysec", "always")
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    [claim] = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]


def test_postgres_statefulset(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    postgres = manifests[("StatefulSet", "postgres")]
    [container] = postgres["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "postgres:15"
    assert postgres["spec"]["volumeClaimTemplates"]
    assert postgres["spec"]["serviceName"] == "postgres"
