"""Pure registry rules: stages, aliases, versions, names, sources, and the request's audit context."""

from __future__ import annotations

import base64

import pytest
from aiohttp.test_utils import make_mocked_request

from metricgate.api.codec import Fields
from metricgate.api.registry_codec import audit_from
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.registry import rules
from metricgate.domain.tracking.entities import Tag


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("none", "None"),
        ("STAGING", "Staging"),
        ("production", "Production"),
        ("Archived", "Archived"),
    ],
)
def test_stages_are_case_insensitive_and_stored_canonically(given: str, stored: str) -> None:
    assert rules.canonical_stage(given) == stored


@pytest.mark.parametrize("bad", ["", "Prod", "Deleted_Internal", None, " staging"])
def test_unknown_stages_are_invalid(bad: str | None) -> None:
    with pytest.raises(InvalidParameter, match="Invalid Model Version stage"):
        rules.canonical_stage(bad)


@pytest.mark.parametrize("alias", ["latest", "LATEST", "v1", "V42", "a b", "a.b", "x" * 256, ""])
def test_reserved_and_malformed_aliases(alias: str) -> None:
    with pytest.raises(InvalidParameter):
        rules.validate_alias(alias)


@pytest.mark.parametrize("alias", ["champion", "v1a", "latest-prod", "A_1", "x" * 255])
def test_valid_aliases(alias: str) -> None:
    assert rules.validate_alias(alias) == alias


def test_versions_are_positive_int32_strings() -> None:
    assert rules.parse_version("3") == 3 and rules.parse_version(" 7 ") == 7
    for bad in ("0", "-1", "1.5", "abc", "99999999999", str(2**31)):
        with pytest.raises(InvalidParameter):
            rules.parse_version(bad)
    with pytest.raises(InvalidParameter, match="Missing value"):
        rules.parse_version(None)


def test_model_names() -> None:
    assert rules.validate_model_name("fraud model-v2") == "fraud model-v2"
    for bad in ("", None, "a/b", "a:b", "x" * 257):
        with pytest.raises(InvalidParameter):
            rules.validate_model_name(bad)


def test_tags_limits() -> None:
    rules.validate_tag(Tag("k", "v" * rules.MAX_TAG_VALUE_LENGTH))
    for bad in (
        Tag("", "v"),
        Tag("k" * 251, "v"),
        Tag("k", "v" * (rules.MAX_TAG_VALUE_LENGTH + 1)),
        Tag("../k", "v"),
    ):
        with pytest.raises(InvalidParameter):
            rules.validate_tag(bad)


def test_source_uris() -> None:
    assert rules.split_runs_source("runs:/abc/model/sub") == ("abc", "model/sub")
    assert rules.split_runs_source("runs:/abc") == ("abc", "")
    assert rules.split_runs_source("s3://b/k") is None
    assert rules.split_models_source("models:/m-123") == ("m-123", None)
    assert rules.split_models_source("models:/name/4") == ("name", 4)
    assert rules.split_models_source("file:///x") is None
    for bad in ("runs:/", "models:/a/b/c", "models:/name/latest"):
        with pytest.raises(InvalidParameter):
            rules.split_runs_source(bad) if bad.startswith("runs") else rules.split_models_source(
                bad
            )


def _basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


def test_audit_context_from_headers_and_body() -> None:
    def audit(
        headers: dict[str, str], body: dict[str, str] | None = None
    ) -> tuple[str | None, str | None]:
        found = audit_from(make_mocked_request("POST", "/", headers=headers), Fields(body or {}))
        return found.actor, found.comment

    assert audit({}) == (None, None)
    assert audit({"Authorization": _basic("carol:pw")}) == ("carol", None)
    # Basic auth wins over the header; the body's comment over the comment header.
    both = {
        "Authorization": _basic("carol:pw"),
        "X-Metricgate-User": "dave",
        "X-Metricgate-Comment": "h",
    }
    assert audit(both, {"comment": "b"}) == ("carol", "b")
    assert audit({"X-Metricgate-User": "dave", "X-Metricgate-Comment": "h"}) == ("dave", "h")
    assert audit({"Authorization": "Bearer tok", "X-Metricgate-User": "dave"}) == ("dave", None)
    for bad_headers, bad_body in (
        ({"Authorization": "Basic %%%"}, {}),
        ({"X-Metricgate-User": "u" * 257}, {}),
        ({}, {"comment": "c" * 5001}),
        ({"X-Metricgate-Comment": "a\x00b"}, {}),
    ):
        with pytest.raises(InvalidParameter):
            audit(bad_headers, bad_body)


# ---------------------------------------------------------------- model-version source rules

RUN = "0123456789abcdef0123456789abcdef"
PROXIED_ROOT = f"mlflow-artifacts:/1/{RUN}/artifacts"
LOCAL_ROOT = f"file:///srv/mlartifacts/1/{RUN}/artifacts"
TRAVERSALS = [
    "../../../../etc/passwd",
    "/srv/mlartifacts/../../etc",
    "mlflow-artifacts:/../../../etc",
    f"runs:/{RUN}/../../../etc",
    "models:/m-1/../../x",
    "s3://bucket/a/../../b",
    "s3://bucket/a/./b",
    "mlflow-artifacts:/%2e%2e/%2e%2e/etc",
    "mlflow-artifacts:/%2E%2E%2F%2E%2E%2Fetc",
    "mlflow-artifacts:/%252e%252e/etc",  # encoded twice
    "http://host/api/2.0/mlflow-artifacts/artifacts/..%2f..%2fetc",
    "s3://bucket/a\\..\\..\\b",
    "s3://bucket/a%5cb",  # an encoded backslash
    "s3://bucket/key\x00.txt",
    "s3://bucket/key%00.txt",
    "s3://bucket/key\n",
    "relative/model",  # resolved against the server's cwd by stock: never inside a run
    "s3://bucket",
    "http://[::1/x",  # not even a URI
]


@pytest.mark.parametrize("source", TRAVERSALS)
@pytest.mark.parametrize(("run_id", "model_id"), [(None, None), (RUN, None), (None, "m-1")])
def test_no_scheme_may_carry_a_relative_path(
    source: str, run_id: str | None, model_id: str | None
) -> None:
    with pytest.raises(InvalidParameter, match=r"^Invalid model version source: "):
        rules.source_owner(source, run_id, model_id)


@pytest.mark.parametrize(
    ("source", "run_id", "model_id"),
    [
        ("file:///etc", None, None),  # local paths need the run that contains them
        ("/srv/mlartifacts/1/x/artifacts/model", None, None),
        (f"{PROXIED_ROOT}/model", None, None),  # so do proxied ones
        (f"http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/model", None, None),
        ("file://fileserver/share/model", RUN, None),  # another machine's disk
        (f"runs:/{RUN}/model", "f" * 32, None),  # a run other than the one named
        (f"runs:/{RUN}/model", None, "m-1"),  # a run source does not belong to a logged model
        (f"runs://profile/{RUN}/model", RUN, None),
        ("models:/m-1", None, "m-2"),
        ("models://profile/m-1", None, "m-1"),
    ],
)
def test_sources_refused_without_a_lookup(
    source: str, run_id: str | None, model_id: str | None
) -> None:
    with pytest.raises(InvalidParameter, match=r"^Invalid model version source: "):
        rules.source_owner(source, run_id, model_id)


@pytest.mark.parametrize(
    ("source", "run_id", "model_id"),
    [
        ("s3://bucket/prefix/1/run/artifacts/model", None, None),
        ("s3://bucket/prefix/1/run/artifacts/model", RUN, None),
        ("gs://bucket/model", None, "m-1"),
        ("https://example.com/models/model.tar.gz", None, None),
        (f"runs:/{RUN}/model", RUN, None),
        (f"runs:/{RUN}/model", None, None),  # the ids come from the source (stock: run_id required)
        ("models:/m-1", None, "m-1"),
        ("models:/m-1", RUN, None),
        ("models:/name/3", None, None),
        ("s3://bucket/a..b/c.d", None, None),  # dots inside a name are not traversal
    ],
)
def test_sources_that_need_no_owner(source: str, run_id: str | None, model_id: str | None) -> None:
    assert rules.source_owner(source, run_id, model_id) is None


@pytest.mark.parametrize(
    ("source", "run_id", "model_id", "owner"),
    [
        (f"{PROXIED_ROOT}/model", RUN, None, rules.SourceOwner("run_id", RUN)),
        (f"{LOCAL_ROOT}/model", RUN, None, rules.SourceOwner("run_id", RUN)),
        ("/srv/x", RUN, "m-1", rules.SourceOwner("model_id", "m-1")),  # model_id wins, as in stock
    ],
)
def test_local_and_proxied_sources_name_their_owner(
    source: str, run_id: str | None, model_id: str | None, owner: rules.SourceOwner
) -> None:
    assert rules.source_owner(source, run_id, model_id) == owner


OWNER = rules.SourceOwner("run_id", RUN)


@pytest.mark.parametrize(
    ("source", "root"),
    [
        (f"{PROXIED_ROOT}/model", PROXIED_ROOT),
        (PROXIED_ROOT, PROXIED_ROOT),
        (f"{PROXIED_ROOT}/model/", f"{PROXIED_ROOT}/"),
        (f"mlflow-artifacts:/1/{RUN}/artifacts/my%20model", PROXIED_ROOT),
        (f"{LOCAL_ROOT}/model", LOCAL_ROOT),
        (f"/srv/mlartifacts/1/{RUN}/artifacts/model", LOCAL_ROOT),  # a bare path is file:
        (f"file://localhost/srv/mlartifacts/1/{RUN}/artifacts/model", LOCAL_ROOT),
        (f"file:///srv/mlartifacts/1/{RUN}/artifacts/model", f"/srv/mlartifacts/1/{RUN}/artifacts"),
    ],
)
def test_sources_inside_their_owner(source: str, root: str) -> None:
    rules.check_source_within(source, OWNER, root)


@pytest.mark.parametrize(
    ("source", "root", "message"),
    [
        (f"{PROXIED_ROOT}/model", None, "run_id request parameter must identify"),  # no such run
        (f"{LOCAL_ROOT}/model", None, "contained within the artifact directory of the run"),
        (
            f"mlflow-artifacts:/1/{'f' * 32}/artifacts/model",
            PROXIED_ROOT,
            "must identify",
        ),  # another run's
        (
            f"mlflow-artifacts:/1/{RUN}/artifacts-other/model",
            PROXIED_ROOT,
            "must identify",
        ),  # a sibling
        (f"mlflow-artifacts://other-host/1/{RUN}/artifacts/model", PROXIED_ROOT, "must identify"),
        (
            f"http://h/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/m",
            PROXIED_ROOT,
            "must identify",
        ),
        ("mlflow-artifacts:/1", PROXIED_ROOT, "must identify"),  # the root's parent
        (
            f"{PROXIED_ROOT}/model",
            "mlflow-artifacts:",
            "must identify",
        ),  # an empty root holds nothing
        ("file:///etc", LOCAL_ROOT, "contained within the artifact directory"),
        (
            f"{LOCAL_ROOT}/model",
            PROXIED_ROOT,
            "contained within",
        ),  # the run's artifacts are not local
        (f"{LOCAL_ROOT}/model", f"s3://b/1/{RUN}/artifacts", "contained within"),
    ],
)
def test_sources_outside_their_owner(source: str, root: str | None, message: str) -> None:
    with pytest.raises(InvalidParameter, match=f"^Invalid model version source: .*{message}"):
        rules.check_source_within(source, OWNER, root)


def test_source_message_names_model_id_for_a_logged_model() -> None:
    with pytest.raises(InvalidParameter, match="model_id request parameter has to be specified"):
        rules.check_source_within("/srv/x", rules.SourceOwner("model_id", "m-1"), None)


# ---------------------------------------------------------------- host-addressed sources (stock 3.17.2)


@pytest.mark.parametrize(
    "source",
    [
        "http://host/../x",
        "https://example.com/models/model.tar.gz",
        "HTTPS://example.com/m",
        "ftp://",
        "ftp:///srv/model",
        "sftp://user@host/m",
        "hdfs://namenode:8020/m",
        "viewfs://cluster/m",
        "mlflow-artifacts://other-host:5000/1/run/artifacts/m",
        "r2://bucket@account.r2.cloudflarestorage.com/m",
        "b2://bucket@s3.us-west.backblazeb2.com/m",
        "abfss://fs@account.dfs.core.windows.net/m",
        f"http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/model",
    ],
)
def test_host_addressed_sources_are_refused(source: str) -> None:
    scheme = source.split(":", 1)[0].lower()
    with pytest.raises(InvalidParameter, match=f"^'source' cannot use the '{scheme}' scheme: "):
        rules.reject_host_addressed_source(source)
    # An operator may allow a scheme, as with stock's MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES.
    rules.reject_host_addressed_source(source, frozenset({scheme}))


@pytest.mark.parametrize(
    "source",
    [
        f"mlflow-artifacts:/1/{RUN}/artifacts/model",  # this server, not another host
        "s3://bucket/model",
        "gs://bucket/model",
        "wasbs://container@account.blob.core.windows.net/m",  # stock pins its domain
        "file:///srv/model",
        "/srv/model",
        f"runs:/{RUN}/model",
        "models:/m/1",
        "http://[::1/x",  # not a URI: reject_relative_source refuses it
    ],
)
def test_sources_that_address_no_other_host(source: str) -> None:
    rules.reject_host_addressed_source(source)


# ---------------------------------------------------------------- models:/ sources (lineage)


@pytest.mark.parametrize(
    ("source", "parsed"),
    [
        ("models:/m-0123", rules.ModelsSource(model_id="m-0123")),
        ("models:/name/3", rules.ModelsSource(name="name", version="3")),
        ("models:/name/latest", rules.ModelsSource(name="name")),
        ("models:/name/LATEST", rules.ModelsSource(name="name")),
        ("models:/name/Production", rules.ModelsSource(name="name", stage="Production")),
        (
            "models:/name/nonsense",
            rules.ModelsSource(name="name", stage="nonsense"),
        ),  # refused later
        ("models:/name@champion", rules.ModelsSource(name="name", alias="champion")),
        ("models:/a@b@c", rules.ModelsSource(name="a@b", alias="c")),
        ("models:/name/3?x=1", rules.ModelsSource(name="name", version="3")),  # urlparse's path
        ("s3://bucket/models/x", None),
        (f"runs:/{RUN}/model", None),
    ],
)
def test_models_sources_parse_as_stock(source: str, parsed: rules.ModelsSource | None) -> None:
    assert rules.parse_models_source(source) == parsed


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("models://profile/name/1", "must use the active model registry"),
        ("models:/", "model_id request parameter must identify"),
        ("models:/a/b/c", "model_id request parameter must identify"),
        ("models:/name/", "model_id request parameter must identify"),
        ("models:/name/ ", "model_id request parameter must identify"),
        ("models:/name@", "model_id request parameter must identify"),
        ("models:/ /1", "model_id request parameter must identify"),
    ],
)
def test_malformed_models_sources_are_refused(source: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=f"^Invalid model version source: .*{message}"):
        rules.parse_models_source(source)


def test_lineage_ids_must_be_the_referenced_versions() -> None:
    rules.check_lineage("models:/m/1", None, None, RUN, "m-1")  # taken from the version
    rules.check_lineage("models:/m/1", RUN, "m-1", RUN, "m-1")
    rules.check_lineage("models:/m/1", RUN, None, RUN, None)
    for run_id, model_id in ((("f" * 32), None), (None, "m-2"), (RUN, "m-2"), (None, "m-1")):
        with pytest.raises(InvalidParameter, match="must match the referenced model version"):
            rules.check_lineage("models:/m/1", run_id, model_id, RUN, None)
