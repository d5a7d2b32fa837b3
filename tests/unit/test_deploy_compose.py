"""deploy/compose.yaml, .env.example, haproxy.cfg and the Dockerfile against the compose
specification and against what metricgate really reads, parses and serves (no Docker here)."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest
from deploy_support import (
    DEPLOY,
    app_get_paths,
    assert_known_env,
    load_all,
    parse_command,
    settings_from,
)

COMPOSE = DEPLOY / "compose.yaml"
_VAR = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    [doc] = load_all(COMPOSE)
    return doc


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} against ``env``; $$ stays for the shell."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if value:
            return value
        if op and op.endswith("?"):
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return arg or ""

    return _VAR.sub(replace, text)


def _service_env(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    return {
        name: _interpolate(str(value), env)
        for name, value in service.get("environment", {}).items()
    }


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    schema = json.loads(schema_text)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert not errors, errors


def test_services_images_and_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "seaweedfs",
        "migrate",
        "gateway",
        "flusher",
        "lb",
    }
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert services["seaweedfs"]["image"].startswith("chrislusf/seaweedfs")
    assert services["seaweedfs"]["command"][:2] == ["server", "-s3"]
    # The same commands the real CLI parses (entrypoint `metricgate`, deploy/Dockerfile).
    migrate = parse_command(services["migrate"]["command"])
    gateway = parse_command(services["gateway"]["command"])
    flusher = parse_command(services["flusher"]["command"])
    assert migrate.command == "migrate"
    assert gateway.command == "serve" and gateway.embedded_flusher is False
    assert flusher.command == "flush"
    for name in ("migrate", "gateway", "flusher"):
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_redis_runs_with_the_append_only_file(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync ${REDIS_APPENDFSYNC:-everysec}" in command
    assert "--maxmemory-policy noeviction" in command


def test_startup_order_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("gateway", "flusher"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["lb"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "seaweedfs", "gateway"):
        assert services[name]["healthcheck"]["test"], name
    probe = " ".join(services["gateway"]["healthcheck"]["test"])
    port = services["gateway"]["environment"]["METRICGATE_PORT"]
    assert f"http://127.0.0.1:{port}/ready" in probe
    assert "/ready" in app_get_paths()


def test_stop_grace_periods_cover_the_drain_timeouts(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    services = compose["services"]
    gateway = settings_from(_service_env(services["gateway"], env_example))
    flusher = settings_from(_service_env(services["flusher"], env_example))
    assert (
        int(services["gateway"]["stop_grace_period"].rstrip("s")) > gateway.http.shutdown_timeout_s
    )
    assert int(services["flusher"]["stop_grace_period"].rstrip("s")) > flusher.flush.drain_timeout_s


def test_metricgate_settings_exist_and_are_valid(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    for name in ("migrate", "gateway", "flusher"):
        service = compose["services"][name]
        assert_known_env(set(service["environment"]), f"compose service {name}")
        settings = settings_from(_service_env(service, env_example))
        assert (
            settings.postgres.url.startswith("postgresql://")
            and "@postgres:5432/" in settings.postgres.url
        )
        assert settings.redis.url.startswith("redis://:") and settings.redis.url.endswith(
            "@redis:6379/0"
        )
        # Every process must agree on the shard count (crc32(run_id) % shards).
        assert settings.ingest.shards == int(env_example["METRICGATE_INGEST_SHARDS"])
    gateway_env = _service_env(compose["services"]["gateway"], env_example)
    assert settings_from(gateway_env).http.port == 5000
    assert_known_env(set(env_example), "deploy/.env.example")


def test_scaled_services_publish_no_fixed_ports(compose: dict[str, Any]) -> None:
    # `--scale gateway=2` would collide on a published host port; only the balancer publishes.
    published = [name for name, service in compose["services"].items() if service.get("ports")]
    assert published == ["lb"]
    assert "container_name" not in compose["services"]["gateway"]
    assert "container_name" not in compose["services"]["flusher"]


def test_no_credentials_in_compose_or_env_example(
    compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    text = COMPOSE.read_text()
    # Every secret comes from deploy/.env and is required there (no default value).
    for name in (
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        uses = re.findall(r"\$\{" + name + r"(:?[-?][^}]*)?\}", text)
        assert uses and all(u.startswith(":?") for u in uses), name
        assert re.fullmatch(r"<[a-z0-9-]+>", env_example[name]), (
            f"{name} in .env.example must be a placeholder"
        )
    # Every variable compose.yaml interpolates is documented in .env.example or has a default.
    for name, op, _ in _VAR.findall(text):
        assert name in env_example or op in (":-", "-"), (
            f"${{{name}}} is neither in .env.example nor defaulted"
        )


def test_gitignore_keeps_the_real_env_file_out() -> None:
    ignored = (DEPLOY.parent / ".gitignore").read_text().split()
    assert "deploy/.env" in ignored


def test_haproxy_balances_over_ready_gateways(compose: dict[str, Any]) -> None:
    config = (DEPLOY / "haproxy.cfg").read_text()
    port = compose["services"]["gateway"]["environment"]["METRICGATE_PORT"]
    assert re.search(
        rf"^\s*server-template gateway \d+-\d+ gateway:{port} check resolvers docker", config, re.M
    )
    assert "option httpchk GET /ready" in config
    assert re.search(r"^\s*bind :5000$", config, re.M)
    assert compose["services"]["lb"]["ports"] == ["${LB_PORT:-5000}:5000"]
    mount = compose["services"]["lb"]["volumes"][0]
    assert mount.startswith("./haproxy.cfg:")


def test_dockerfile_builds_a_non_root_metricgate_image() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "pip install ." in text
    assert re.search(r"^USER 10001", text, re.M)
    assert re.search(r'^ENTRYPOINT \["metricgate"\]', text, re.M)
    default = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert parse_command(default).command == "serve"
    # The build context is the repository root; .dockerignore there keeps the venv and state out.
    lines = (DEPLOY.parent / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".state"} <= ignored
    assert not {"src", "pyproject.toml", "README.md"} & ignored
