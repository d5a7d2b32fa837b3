"""Pure registry rules: stages, aliases, versions, names, sources, and the request's audit context."""

from __future__ import annotations

import base64

import pytest
from aiohttp.test_utils import make_mocked_request

from metricgate.api.codec import Fields
from metricgate.api.registry_codec import audit_from
from metricgate.entities import Tag
from metricgate.errors import InvalidParameter
from metricgate.registry import rules


@pytest.mark.parametrize(
    ("given", "stored"),
    [("none", "None"), ("STAGING", "Staging"), ("production", "Production"), ("Archived", "Archived")],
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
    for bad in (Tag("", "v"), Tag("k" * 251, "v"), Tag("k", "v" * (rules.MAX_TAG_VALUE_LENGTH + 1)), Tag("../k", "v")):
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
            rules.split_runs_source(bad) if bad.startswith("runs") else rules.split_models_source(bad)


def _basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


def test_audit_context_from_headers_and_body() -> None:
    def audit(headers: dict[str, str], body: dict[str, str] | None = None) -> tuple[str | None, str | None]:
        found = audit_from(make_mocked_request("POST", "/", headers=headers), Fields(body or {}))
        return found.actor, found.comment

    assert audit({}) == (None, None)
    assert audit({"Authorization": _basic("carol:pw")}) == ("carol", None)
    # Basic auth wins over the header; the body's comment over the comment header.
    both = {"Authorization": _basic("carol:pw"), "X-Metricgate-User": "dave", "X-Metricgate-Comment": "h"}
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
