"""Settings.from_env: METRICGATE_* parsing, CLI overrides, errors that name the variable, masked secrets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from metricgate import config
from metricgate.config import ConfigError, PostgresSettings, RedisSettings, Settings, mask_url


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 5000
    assert settings.http.access_log is False
    assert settings.postgres.url == "postgresql://postgres@127.0.0.1:5432/metricgate"
    assert settings.postgres.migrate_on_start is False
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.artifacts.uri == (Path.cwd() / "mlartifacts").as_uri()
    assert settings.log_level == "INFO"


def test_every_variable_is_read() -> None:
    env = {
        "METRICGATE_HOST": "0.0.0.0",
        "METRICGATE_PORT": "8080",
        "METRICGATE_MAX_BODY_BYTES": "1024",
        "METRICGATE_SHUTDOWN_TIMEOUT_S": "2.5",
        "METRICGATE_ACCESS_LOG": "yes",
        "METRICGATE_DATABASE_URL": "postgres://u:pw@db:6543/x",
        "METRICGATE_DB_POOL_MIN": "1",
        "METRICGATE_DB_POOL_MAX": "3",
        "METRICGATE_DB_ACQUIRE_TIMEOUT_S": "0.5",
        "METRICGATE_DB_COMMAND_TIMEOUT_S": "7",
        "METRICGATE_MIGRATE_ON_START": "on",
        "METRICGATE_REDIS_URL": "redis://cache:6380/2",
        "METRICGATE_ARTIFACTS_URI": "file:///srv/artifacts",
        "METRICGATE_LOG_LEVEL": "debug",
    }
    s = Settings.from_env(env)
    assert (s.http.host, s.http.port, s.http.max_body_bytes) == ("0.0.0.0", 8080, 1024)
    assert (s.http.shutdown_timeout_s, s.http.access_log) == (2.5, True)
    assert s.postgres.url == "postgres://u:pw@db:6543/x"
    assert (s.postgres.pool_min_size, s.postgres.pool_max_size) == (1, 3)
    assert (s.postgres.acquire_timeout_s, s.postgres.command_timeout_s) == (0.5, 7.0)
    assert s.postgres.migrate_on_start is True
    assert s.redis.url == "redis://cache:6380/2"
    assert s.artifacts.uri == "file:///srv/artifacts"
    assert s.log_level == "DEBUG"


def test_other_variables_are_ignored() -> None:
    settings = Settings.from_env({"PORT": "1", "METRICGATEPORT": "2", "metricgate_port": "3"})
    assert settings.http.port == 5000


def test_empty_value_counts_as_unset() -> None:
    settings = Settings.from_env({"METRICGATE_PORT": "", "METRICGATE_DATABASE_URL": ""})
    assert settings.http.port == 5000
    assert settings.postgres.url == PostgresSettings.url


def test_none_environ_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICGATE_PORT", "5123")
    assert Settings.from_env().http.port == 5123


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        ("Yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        ("off", False),
    ],
)
def test_booleans(value: str, expected: bool) -> None:
    assert Settings.from_env({"METRICGATE_ACCESS_LOG": value}).http.access_log is expected


def test_overrides_win_over_the_environment() -> None:
    env = {"METRICGATE_PORT": "8080", "METRICGATE_DATABASE_URL": "postgresql://env/db"}
    settings = Settings.from_env(
        env,
        port=9090,
        host="::1",
        database_url="postgresql://flag/db",
        redis_url="redis://flag:1/0",
        artifacts_uri="file:///flag",
        migrate_on_start=True,
        log_level="warning",
    )
    assert (settings.http.host, settings.http.port) == ("::1", 9090)
    assert settings.postgres.url == "postgresql://flag/db"
    assert settings.postgres.migrate_on_start is True
    assert settings.redis.url == "redis://flag:1/0"
    assert settings.artifacts.uri == "file:///flag"
    assert settings.log_level == "WARNING"


def test_none_override_means_unset() -> None:
    settings = Settings.from_env({"METRICGATE_PORT": "8080"}, port=None, database_url=None)
    assert settings.http.port == 8080
    assert settings.postgres.url == PostgresSettings.url


def test_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        Settings.from_env({}, colour="blue")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METRICGATE_PORT", "eighty"),
        ("METRICGATE_MAX_BODY_BYTES", "1.5"),
        ("METRICGATE_DB_POOL_MAX", "many"),
        ("METRICGATE_SHUTDOWN_TIMEOUT_S", "soon"),
        ("METRICGATE_DB_ACQUIRE_TIMEOUT_S", "10s"),
        ("METRICGATE_ACCESS_LOG", "maybe"),
        ("METRICGATE_MIGRATE_ON_START", "2"),
    ],
)
def test_malformed_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env({name: value})
    assert name in str(excinfo.value)
    assert repr(value) in str(excinfo.value)


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_port_out_of_range(port: str) -> None:
    with pytest.raises(ConfigError, match="METRICGATE_PORT"):
        Settings.from_env({"METRICGATE_PORT": port})


@pytest.mark.parametrize("url", ["mysql://h/db", "sqlite:///x.db", "127.0.0.1:5432"])
def test_database_url_must_be_postgresql(url: str) -> None:
    with pytest.raises(ConfigError, match="METRICGATE_DATABASE_URL"):
        Settings.from_env({"METRICGATE_DATABASE_URL": url})


@pytest.mark.parametrize("uri", ["/srv/artifacts", "http://host/x", "gs://bucket/x"])
def test_artifacts_uri_must_be_a_file_or_s3_uri(uri: str) -> None:
    with pytest.raises(ConfigError, match="METRICGATE_ARTIFACTS_URI"):
        Settings.from_env({"METRICGATE_ARTIFACTS_URI": uri})


def test_s3_artifacts_uri_and_endpoint() -> None:
    settings = Settings.from_env(
        {
            "METRICGATE_ARTIFACTS_URI": "s3://bucket/prefix",
            "METRICGATE_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
        }
    )
    assert settings.artifacts.uri == "s3://bucket/prefix"
    assert settings.artifacts.s3_endpoint_url == "http://127.0.0.1:8333"
    with pytest.raises(ConfigError, match="METRICGATE_S3_ENDPOINT_URL"):
        Settings.from_env({"METRICGATE_S3_ENDPOINT_URL": "127.0.0.1:8333"})


def test_override_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="METRICGATE_PORT"):
        Settings.from_env({}, port=70000)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:s3cret@db:5432/x", "postgresql://user:***@db:5432/x"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://user@db/x", "postgresql://user@db/x"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_url(url: str | None, masked: str | None) -> None:
    assert mask_url(url) == masked


def test_reprs_mask_passwords() -> None:
    settings = Settings.from_env(
        {
            "METRICGATE_DATABASE_URL": "postgresql://app:pg-s3cret@db:5432/x",
            "METRICGATE_REDIS_URL": "redis://default:redis-s3cret@cache:6379/0",
        }
    )
    for text in (repr(settings), str(settings), repr(settings.postgres), repr(settings.redis)):
        assert "s3cret" not in text
    assert "postgresql://app:***@db:5432/x" in repr(settings.postgres)
    assert "redis://default:***@cache:6379/0" in repr(settings.redis)
    # The real value stays usable.
    assert settings.postgres.url == "postgresql://app:pg-s3cret@db:5432/x"
    assert isinstance(settings.redis, RedisSettings)


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.http.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def _readme_setting_rows() -> list[str]:
    """The METRICGATE_* rows of README's first configuration table (other rows, e.g. AWS_*, are
    hand-written there)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = text.split("| Variable | Default | Meaning |", 1)[1].split("\n\n", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| `METRICGATE_")]


def test_readme_table_is_the_declarations() -> None:
    # Regenerate with: .venv/bin/python -m metricgate.config
    assert _readme_setting_rows() == config.markdown_rows()


def test_every_field_is_declared_or_a_section() -> None:
    """A field added without setting() would be invisible to the reader, the checks and README."""
    not_settings = {("ArtifactSettings", "default_artifact_root")}
    sections = {type(section) for section, _, _ in config.declarations()} - {Settings}
    for cls in sections | {Settings}:
        for f in dataclasses.fields(cls):
            if cls is Settings and f.name in config._SECTIONS:
                continue
            assert "setting" in f.metadata or (cls.__name__, f.name) in not_settings, (
                cls.__name__,
                f.name,
            )
    names = [declared.env for _, _, declared in config.declarations()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    "section, f, declared",
    list(config.declarations()),
    ids=[d.env for _, _, d in config.declarations()],
)
def test_each_variable_is_read_and_checked(
    section: object, f: dataclasses.Field[object], declared: config.Declared
) -> None:
    name = config.ENV_PREFIX + declared.env
    kind = type(f.default)
    if kind is bool:
        assert getattr(
            _owner(Settings.from_env({name: "off" if f.default else "on"}), declared), f.name
        ) is (not f.default)
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "maybe"})
    elif kind in (int, float):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "lots"})
        for bound in (declared.minimum, declared.above):
            if bound is not None:
                with pytest.raises(ConfigError, match=name):
                    Settings.from_env(
                        {name: str(bound - 1 if bound is declared.minimum else bound)}
                    )
        if declared.maximum is not None:
            with pytest.raises(ConfigError, match=name):
                Settings.from_env({name: str(declared.maximum + 1)})
    elif declared.choices:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "neither"})


def _owner(settings: Settings, declared: config.Declared) -> object:
    return next(section for section, _, d in config.declarations(settings) if d is declared)
