"""Unit tests for domain/tracking/rules.py: MLflow's server-side rules and their exact messages.

The expected texts are copied from mlflow 3.17.2, ``mlflow/utils/validation.py``
(``_validate_batch_limit``, ``_validate_param_keys_unique``, ``bad_path_message``,
``bad_character_message``, ``_parse_experiment_id``) and ``mlflow/store/tracking/sqlalchemy_store.py``.
"""

from __future__ import annotations

import posixpath

import pytest

from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.entities import Metric, Param, Tag
from metricgate.domain.tracking.rules import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_EXPERIMENTS_PER_PAGE,
    MAX_METRIC_HISTORY_PAGE,
    MAX_PARAM_VALUE_LENGTH,
    MAX_RUNS_PER_PAGE,
    MAX_TAG_VALUE_LENGTH,
    parse_experiment_id,
    truncate,
    validate_batch,
    validate_experiment_name,
    validate_experiment_tag,
    validate_key,
    validate_max_results,
    validate_metric,
    validate_param,
    validate_run_id,
    validate_tag,
)

BAD_CHARACTER = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
    "spaces ( ), colon(:) and slashes (/)."
)


def bad_path(path: str, name: str) -> str:
    return (
        f"Invalid value \"{name}\" for parameter '{path}' supplied: Names may be treated as files in "
        "certain cases, and must not resolve to other names when treated as such. This name would "
        f"resolve to {posixpath.normpath(name)!r}"
    )


def metrics(n: int) -> list[Metric]:
    return [Metric(f"m{i}", float(i), 1, i) for i in range(n)]


def params(n: int) -> list[Param]:
    return [Param(f"p{i}", str(i)) for i in range(n)]


def tags(n: int) -> list[Tag]:
    return [Tag(f"t{i}", str(i)) for i in range(n)]


# ---------------------------------------------------------------- keys


class TestKeys:
    @pytest.mark.parametrize(
        "key",
        [
            "a",
            "loss",
            "train/loss",
            "a.b.c",
            "a-b_c",
            "with space",
            "colon:ok",
            "UPPER123",
            "mlflow.runName",
            "a/b/c.d",
            "x" * MAX_ENTITY_KEY_LENGTH,
            "ünïcødé",  # \w is unicode-aware, as in MLflow
            ".hidden",
            "a..b",
        ],
    )
    def test_valid(self, key: str) -> None:
        validate_key(key)

    @pytest.mark.parametrize(
        "key", ["a!b", "a$b", "a\\b", "a\nb", "a\tb", "a'b", 'a"b', "a?b", "a*b", "a,b", "a%b"]
    )
    def test_bad_characters(self, key: str) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_key(key)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
        assert BAD_CHARACTER in info.value.message
        assert "'key'" in info.value.message

    def test_bad_character_message_exact(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_key("a!b", "params[0].key")
        assert (
            info.value.message
            == f"Invalid value \"a!b\" for parameter 'params[0].key' supplied: {BAD_CHARACTER}"
        )

    @pytest.mark.parametrize(
        "key", ["..", "../a", "a/..", "a/../b", "/a", "/", "a//b", ".", "./a", "a/", "a/./b", "//a"]
    )
    def test_path_rules(self, key: str) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_key(key)
        assert info.value.message == bad_path("key", key)

    def test_empty_key(self) -> None:
        with pytest.raises(InvalidParameter):
            validate_key("")

    def test_length_limit(self) -> None:
        validate_key("k" * 250)
        with pytest.raises(InvalidParameter) as info:
            validate_key("k" * 251)
        assert "exceeds the maximum length of 250 characters" in info.value.message

    def test_path_is_named(self) -> None:
        with pytest.raises(InvalidParameter, match=r"'metrics\[3\]\.key'"):
            validate_key("../x", "metrics[3].key")


class TestRunId:
    @pytest.mark.parametrize(
        "run_id", ["abc", "0123456789abcdef0123456789abcdef", "A-b_c", "x" * 256]
    )
    def test_valid(self, run_id: str) -> None:
        validate_run_id(run_id)

    @pytest.mark.parametrize(
        "run_id", ["", "-abc", "_abc", "a/b", "../x", "a b", "x" * 257, "a;drop"]
    )
    def test_invalid(self, run_id: str) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_run_id(run_id)
        assert "'run_id'" in info.value.message


# ---------------------------------------------------------------- values


class TestValues:
    def test_truncate(self) -> None:
        assert truncate("abc", 5) == "abc"
        assert truncate("abcdef", 3) == "abc"
        assert truncate("", 0) == ""

    def test_param_value_truncated_silently(self) -> None:
        long = "v" * (MAX_PARAM_VALUE_LENGTH + 500)
        param = validate_param(Param("p", long))
        assert param == Param("p", "v" * MAX_PARAM_VALUE_LENGTH)

    def test_param_value_at_limit_untouched(self) -> None:
        value = "v" * MAX_PARAM_VALUE_LENGTH
        assert validate_param(Param("p", value)).value == value
        assert MAX_PARAM_VALUE_LENGTH == 6000

    def test_tag_value_truncated_silently(self) -> None:
        tag = validate_tag(Tag("t", "x" * (MAX_TAG_VALUE_LENGTH + 1)))
        assert tag == Tag("t", "x" * MAX_TAG_VALUE_LENGTH)
        assert MAX_TAG_VALUE_LENGTH == 8000

    def test_param_and_tag_keys_validated(self) -> None:
        with pytest.raises(InvalidParameter, match=r"'params.key'|'key'"):
            validate_param(Param("../p", "1"))
        with pytest.raises(InvalidParameter):
            validate_tag(Tag("/t", "1"))
        with pytest.raises(InvalidParameter):
            validate_param(Param("p" * 251, "1"))
        with pytest.raises(InvalidParameter):
            validate_tag(Tag("t" * 251, "1"))

    def test_metric(self) -> None:
        validate_metric(Metric("loss", 1.0, 0, -5))  # negative steps are allowed
        with pytest.raises(InvalidParameter) as info:
            validate_metric(Metric("loss", 1.0, -1, 0))
        assert "Timestamp must be a nonnegative long (64-bit integer)" in info.value.message
        with pytest.raises(InvalidParameter):
            validate_metric(Metric("a!b", 1.0, 0, 0))
        with pytest.raises(InvalidParameter):
            validate_metric(Metric("m" * 251, 1.0, 0, 0))


# ---------------------------------------------------------------- batches


class TestBatch:
    def test_at_limits(self) -> None:
        validate_batch(metrics(1000), [], [])
        validate_batch([], params(100), tags(100))
        validate_batch(metrics(800), params(100), tags(100))

    def test_too_many_metrics(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_batch(metrics(1001), [], [])
        assert info.value.message == (
            "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. "
            "Please split up metrics across multiple requests and try again."
        )

    def test_too_many_params(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_batch([], params(101), [])
        assert info.value.message == (
            "A batch logging request can contain at most 100 params. Got 101 params. "
            "Please split up params across multiple requests and try again."
        )

    def test_too_many_tags(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_batch([], [], tags(101))
        assert info.value.message == (
            "A batch logging request can contain at most 100 tags. Got 101 tags. "
            "Please split up tags across multiple requests and try again."
        )

    def test_too_many_entities_in_total(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_batch(metrics(1000), params(1), [])
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
        # mlflow/utils/validation.py _validate_batch_log_limits: entity_name="metrics, params, and tags"
        assert info.value.message == (
            "A batch logging request can contain at most 1000 metrics, params, and tags. "
            "Got 1001 metrics, params, and tags. "
            "Please split up metrics, params, and tags across multiple requests and try again."
        )

    def test_duplicate_param_key(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_batch([], [Param("a", "1"), Param("a", "2")], [])
        assert info.value.message == (
            "Duplicate parameter keys have been submitted: ['a']. Please ensure the request "
            "contains only one param value per param key."
        )

    def test_duplicate_param_key_even_with_same_value(self) -> None:
        # MLflow's _validate_param_keys_unique looks at keys only.
        with pytest.raises(InvalidParameter, match="Duplicate parameter keys"):
            validate_batch([], [Param("a", "1"), Param("a", "1")], [])

    def test_duplicate_param_keys_listing_matches_mlflow(self) -> None:
        # MLflow lists every repeated occurrence in request order, not a sorted set.
        batch = [
            Param("b", "1"),
            Param("b", "2"),
            Param("a", "1"),
            Param("a", "2"),
            Param("a", "3"),
        ]
        with pytest.raises(InvalidParameter) as info:
            validate_batch([], batch, [])
        assert info.value.message == (
            "Duplicate parameter keys have been submitted: ['b', 'a', 'a']. Please ensure the "
            "request contains only one param value per param key."
        )

    def test_duplicate_tags_are_allowed(self) -> None:
        _, checked = validate_batch([], [], [Tag("t", "1"), Tag("t", "2")])
        assert [t.key for t in checked] == ["t", "t"]

    def test_truncates_values(self) -> None:
        checked_params, checked_tags = validate_batch(
            [], [Param("p", "v" * 7000)], [Tag("t", "x" * 9000)]
        )
        assert checked_params == [Param("p", "v" * 6000)]
        assert checked_tags == [Tag("t", "x" * 8000)]

    def test_item_paths(self) -> None:
        with pytest.raises(InvalidParameter, match=r"metrics\[1\]"):
            validate_batch([Metric("ok", 1.0, 1), Metric("../bad", 1.0, 1)], [], [])
        with pytest.raises(InvalidParameter, match=r"params\[0\]\.key"):
            validate_batch([], [Param("a!b", "1")], [])
        with pytest.raises(InvalidParameter, match=r"tags\[2\]\.key"):
            validate_batch([], [], [Tag("a", ""), Tag("b", ""), Tag("/c", "")])
        with pytest.raises(InvalidParameter, match=r"metrics\[0\]\.timestamp"):
            validate_batch([Metric("m", 1.0, -5)], [], [])


# ---------------------------------------------------------------- experiments


class TestExperiments:
    @pytest.mark.parametrize(
        ("text", "value"),
        [("0", 0), ("1", 1), ("123456789", 123456789), (str(2**63 - 1), 2**63 - 1)],
    )
    def test_parse_experiment_id(self, text: str, value: int) -> None:
        assert parse_experiment_id(text) == value

    @pytest.mark.parametrize("text", ["abc", "", "1.5", "0x10", "1 2", str(2**63), "-1"])
    def test_invalid_experiment_id(self, text: str) -> None:
        with pytest.raises(InvalidParameter) as info:
            parse_experiment_id(text)
        assert info.value.status == 400

    def test_invalid_experiment_id_message(self) -> None:
        with pytest.raises(InvalidParameter) as info:
            parse_experiment_id("abc")
        assert (
            info.value.message
            == "Invalid experiment ID 'abc'. Experiment ID must be a valid integer."
        )

    def test_experiment_name(self) -> None:
        validate_experiment_name("x")
        validate_experiment_name("n" * 500)
        with pytest.raises(InvalidParameter, match="Invalid experiment name"):
            validate_experiment_name("")
        with pytest.raises(InvalidParameter) as info:
            validate_experiment_name("n" * 501)
        assert info.value.message == "'name' exceeds the maximum length of 500 characters"

    def test_experiment_tag(self) -> None:
        validate_experiment_tag(Tag("k" * 250, "v" * 20000))
        with pytest.raises(
            InvalidParameter, match="'key' exceeds the maximum length of 250 characters"
        ):
            validate_experiment_tag(Tag("k" * 251, "v"))
        with pytest.raises(
            InvalidParameter, match="'value' exceeds the maximum length of 20000 characters"
        ):
            validate_experiment_tag(Tag("k", "v" * 20001))
        with pytest.raises(InvalidParameter):
            validate_experiment_tag(Tag("", "v"))


# ---------------------------------------------------------------- max_results


class TestMaxResults:
    def test_default(self) -> None:
        assert validate_max_results(None, MAX_RUNS_PER_PAGE, 1000) == 1000

    @pytest.mark.parametrize("value", [1, 2, 1000, MAX_RUNS_PER_PAGE])
    def test_in_range(self, value: int) -> None:
        assert validate_max_results(value, MAX_RUNS_PER_PAGE, 1000) == value

    @pytest.mark.parametrize("value", [0, -1, MAX_RUNS_PER_PAGE + 1, 10**9])
    def test_out_of_range(self, value: int) -> None:
        with pytest.raises(InvalidParameter) as info:
            validate_max_results(value, MAX_RUNS_PER_PAGE, 1000)
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
        assert f"Invalid value {value} for parameter 'max_results' supplied" in info.value.message

    def test_limits(self) -> None:
        assert MAX_RUNS_PER_PAGE == 50000
        assert MAX_EXPERIMENTS_PER_PAGE == 50000
        assert MAX_METRIC_HISTORY_PAGE == 25000

    def test_named_parameter(self) -> None:
        with pytest.raises(InvalidParameter, match="'page_size'"):
            validate_max_results(0, 10, 5, name="page_size")
