"""MLflow's server-side validation rules (mlflow/utils/validation.py), as pure functions.

Every check raises ``InvalidParameter`` with MLflow's wording, so a client that matches on the
message (or a human reading it) sees what stock MLflow would have said.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.entities import Metric, Param, Tag

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_BATCH_LOG_REQUEST_BYTES = 1_000_000
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_KEY_LENGTH = 250
MAX_EXPERIMENT_TAG_VALUE_LENGTH = 20000
MAX_ENTITY_KEY_LENGTH = 250
MAX_RUNS_PER_PAGE = 50000
MAX_EXPERIMENTS_PER_PAGE = 50000
MAX_METRIC_HISTORY_PAGE = 25000

_NAME_RE = re.compile(r"[/\w.\- :]*")
_RUN_ID_RE = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
_INT64_MAX = 2**63 - 1

_BAD_CHARACTER_MESSAGE = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
    "spaces ( ), colon(:) and slashes (/)."
)


def _invalid_value(path: str, value: object, message: str | None = None) -> str:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    if message:
        return f"Invalid value {shown} for parameter '{path}' supplied: {message}"
    return f"Invalid value {shown} for parameter '{path}' supplied."


def _path_not_unique(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


def validate_key(name: str, path: str = "key") -> None:
    """Metric, param and tag keys: MLflow's character set, no path tricks, at most 250 chars."""
    # Training loops log the same few keys millions of times: remember the good ones.
    if name in _VALID_KEYS:
        return
    _check_key(name, path)
    if len(_VALID_KEYS) >= _VALID_KEYS_MAX:
        _VALID_KEYS.clear()
    _VALID_KEYS.add(name)


_VALID_KEYS: set[str] = set()
_VALID_KEYS_MAX = 100_000


def is_valid_key(name: str) -> bool:
    """``validate_key`` as a yes/no, for fast paths that leave the error message to the slow one."""
    if name in _VALID_KEYS:
        return True
    try:
        validate_key(name)
    except InvalidParameter:
        return False
    return True


def _check_key(name: str, path: str) -> None:
    if name == "":
        raise InvalidParameter(_invalid_value(path, name, "Names may not be empty."))
    # fullmatch: "$" would also match before a trailing newline, which MLflow lets through.
    if not _NAME_RE.fullmatch(name):
        raise InvalidParameter(_invalid_value(path, name, _BAD_CHARACTER_MESSAGE))
    if _path_not_unique(name):
        raise InvalidParameter(
            _invalid_value(
                path,
                name,
                "Names may be treated as files in certain cases, and must not resolve to other "
                f"names when treated as such. This name would resolve to {posixpath.normpath(name)!r}",
            )
        )
    if len(name) > MAX_ENTITY_KEY_LENGTH:
        raise InvalidParameter(
            f"'{path}' exceeds the maximum length of {MAX_ENTITY_KEY_LENGTH} characters"
        )


def truncate(value: str, limit: int) -> str:
    """MLflow truncates over-long param and tag values by default instead of refusing them."""
    return value if len(value) <= limit else value[:limit]


def validate_run_id(run_id: str, path: str = "run_id") -> None:
    if not _RUN_ID_RE.match(run_id):
        raise InvalidParameter(_invalid_value(path, run_id))


def parse_experiment_id(value: str, path: str = "experiment_id") -> int:
    """Experiment ids travel as strings but are integers here."""
    try:
        parsed = int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(
            f"Invalid experiment ID '{value}'. Experiment ID must be a valid integer."
        ) from None
    if not 0 <= parsed <= _INT64_MAX:
        raise InvalidParameter(
            f"Invalid experiment ID '{value}'. Experiment ID must be a valid integer."
        )
    return parsed


# Bounds on the optional metric fields; they end up in index keys, which PostgreSQL caps at
# about 2.7 kB, so they must be refused before a write is acknowledged.
_METRIC_EXTRA_LIMITS = (("model_id", 256), ("dataset_name", 500), ("dataset_digest", 256))


def validate_metric(metric: Metric, path: str = "") -> None:
    prefix = f"{path}." if path else ""
    validate_key(metric.key, f"{prefix}key" if path else "key")
    for name, limit in _METRIC_EXTRA_LIMITS:
        value = getattr(metric, name)
        if value is not None and len(value) > limit:
            raise InvalidParameter(
                f"'{prefix}{name}' exceeds the maximum length of {limit} characters"
            )
    if metric.timestamp_ms < 0:
        raise InvalidParameter(
            _invalid_value(
                f"{prefix}timestamp",
                metric.timestamp_ms,
                f"metric '{metric.key}' (value={metric.value}). "
                "Timestamp must be a nonnegative long (64-bit integer) ",
            )
        )


def validate_param(param: Param, path: str = "") -> Param:
    """Validate the key and return the param with its value truncated to MLflow's limit."""
    prefix = f"{path}." if path else ""
    validate_key(param.key, f"{prefix}key")
    if len(param.value) > MAX_PARAM_VALUE_LENGTH:
        return Param(param.key, truncate(param.value, MAX_PARAM_VALUE_LENGTH))
    return param


def validate_tag(tag: Tag, path: str = "") -> Tag:
    prefix = f"{path}." if path else ""
    validate_key(tag.key, f"{prefix}key")
    if len(tag.value) > MAX_TAG_VALUE_LENGTH:
        return Tag(tag.key, truncate(tag.value, MAX_TAG_VALUE_LENGTH))
    return tag


def validate_experiment_name(name: str) -> None:
    if name.strip() == "":
        raise InvalidParameter("Invalid experiment name: ''. Experiment name may not be empty.")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidParameter(
            f"'name' exceeds the maximum length of {MAX_EXPERIMENT_NAME_LENGTH} characters"
        )


def validate_experiment_tag(tag: Tag) -> None:
    if tag.key == "":
        raise InvalidParameter("Missing value for required parameter 'key'.")
    # MLflow applies the run tag-name rules (characters, no path tricks) to experiment tags too.
    validate_key(tag.key)
    if len(tag.key) > MAX_EXPERIMENT_TAG_KEY_LENGTH:
        raise InvalidParameter(
            f"'key' exceeds the maximum length of {MAX_EXPERIMENT_TAG_KEY_LENGTH} characters"
        )
    if len(tag.value) > MAX_EXPERIMENT_TAG_VALUE_LENGTH:
        raise InvalidParameter(
            f"'value' exceeds the maximum length of {MAX_EXPERIMENT_TAG_VALUE_LENGTH} characters"
        )


_LOGGED_MODEL_NAME_BAD_CHARS = ("/", ":", ".", "%", '"', "'")


def validate_logged_model_name(name: str | None) -> None:
    """Model names end up in URIs (models:/name/...), so URI syntax characters are refused."""
    if name is None:
        return
    if not name or any(c in name for c in _LOGGED_MODEL_NAME_BAD_CHARS):
        raise InvalidParameter(
            f"Invalid model name ({name!r}) provided. Model name must be a non-empty string "
            f"and cannot contain the following characters: {_LOGGED_MODEL_NAME_BAD_CHARS}"
        )


def _batch_limit(entity: str, limit: int, count: int) -> None:
    if count > limit:
        raise InvalidParameter(
            f"A batch logging request can contain at most {limit} {entity}. Got {count} {entity}. "
            f"Please split up {entity} across multiple requests and try again."
        )


def validate_batch(
    metrics: Sequence[Metric], params: Sequence[Param], tags: Sequence[Tag]
) -> tuple[list[Param], list[Tag]]:
    """log-batch limits and per-item rules; returns params and tags with values truncated."""
    _batch_limit("metrics", MAX_METRICS_PER_BATCH, len(metrics))
    _batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, len(params))
    _batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, len(tags))
    _batch_limit(
        "metrics, params, and tags", MAX_ENTITIES_PER_BATCH, len(metrics) + len(params) + len(tags)
    )
    for index, metric in enumerate(metrics):
        validate_metric(metric, f"metrics[{index}]")
    checked_params = [validate_param(p, f"params[{i}]") for i, p in enumerate(params)]
    checked_tags = [validate_tag(t, f"tags[{i}]") for i, t in enumerate(tags)]
    # MLflow lists every repeated occurrence after the first, in request order.
    seen: set[str] = set()
    dupes = []
    for param in checked_params:
        if param.key in seen:
            dupes.append(param.key)
        seen.add(param.key)
    if dupes:
        raise InvalidParameter(
            f"Duplicate parameter keys have been submitted: {dupes}. Please ensure the request "
            "contains only one param value per param key."
        )
    return checked_params, checked_tags


def validate_max_results(
    value: int | None, limit: int, default: int, name: str = "max_results"
) -> int:
    if value is None:
        return default
    if value <= 0 or value > limit:
        raise InvalidParameter(
            f"Invalid value {value} for parameter '{name}' supplied. It must be at most {limit}, "
            "and at least 1."
        )
    return value
