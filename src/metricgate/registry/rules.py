"""MLflow's registry rules as pure functions: names, stages, aliases, versions, tag limits."""

from __future__ import annotations

import re

from metricgate.entities import Tag
from metricgate.errors import InvalidParameter
from metricgate.validation import validate_key

STAGES = ("None", "Staging", "Production", "Archived")
_STAGE_BY_LOWER = {s.lower(): s for s in STAGES}
# archive_existing_versions only makes sense when promoting into one of these.
ARCHIVING_STAGES = ("Staging", "Production")

MAX_MODEL_NAME_LENGTH = 256
MAX_TAG_KEY_LENGTH = 250
MAX_TAG_VALUE_LENGTH = 100_000
MAX_DESCRIPTION_LENGTH = 100_000
MAX_SOURCE_LENGTH = 10_000
MAX_ALIAS_LENGTH = 255
MAX_VERSION = 2**31 - 1  # model_versions.version is an integer column

_ALIAS_RE = re.compile(r"^[\w\-]*$")
_RESERVED_VERSION_ALIAS_RE = re.compile(r"^v\d+$", re.IGNORECASE)


def canonical_stage(stage: str | None) -> str:
    """``production`` -> ``Production``; anything that is not a stage is a client error."""
    found = _STAGE_BY_LOWER.get((stage or "").lower()) if isinstance(stage, str) else None
    if found is None:
        raise InvalidParameter(
            f"Invalid Model Version stage: {stage}. Value must be one of {', '.join(STAGES)}."
        )
    return found


def required(value: str | None, field: str) -> str:
    """``value``, or MLflow's missing-parameter error when it is None or empty."""
    if not value:
        raise InvalidParameter(f"Missing value for required parameter '{field}'.")
    return value


def validate_model_name(name: str | None, field: str = "name") -> str:
    name = required(name, field)
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise InvalidParameter(
            f"Registered model name exceeds the maximum length of {MAX_MODEL_NAME_LENGTH} characters."
        )
    # The name becomes part of models:/NAME/VERSION and models:/NAME@ALIAS URIs.
    if "/" in name or ":" in name:
        raise InvalidParameter(
            f"Invalid model name: '{name}'. Registered model names may not contain '/' or ':'."
        )
    return name


def parse_version(raw: str | int | None) -> int:
    """Versions travel as strings ("3"); anything but a positive integer is a client error."""
    text = str(raw).strip() if raw is not None else ""
    if not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_VERSION:
        if raw is None or text == "":
            raise InvalidParameter("Missing value for required parameter 'version'.")
        raise InvalidParameter(f"Parameter 'version' must be a positive integer, got '{str(raw)[:100]}'.")
    return int(text)


def validate_alias(alias: str | None) -> str:
    alias = required(alias, "alias")
    if len(alias) > MAX_ALIAS_LENGTH or not _ALIAS_RE.match(alias):
        raise InvalidParameter(
            f"Invalid alias name: '{alias[:300]}'. Aliases may only contain alphanumerics, "
            f"underscores (_) and dashes (-), and be at most {MAX_ALIAS_LENGTH} characters long."
        )
    # models:/NAME/latest and models:/NAME/v3-style URIs would be ambiguous with such aliases.
    if alias.lower() == "latest" or _RESERVED_VERSION_ALIAS_RE.match(alias):
        raise InvalidParameter(
            f"'{alias}' alias name (alias name 'latest' or 'v<number>') is reserved and "
            "cannot be used as an alias."
        )
    return alias


def validate_tag(tag: Tag) -> Tag:
    required(tag.key, "key")
    validate_key(tag.key)  # MLflow applies the run tag-name rules to registry tags too
    if len(tag.key) > MAX_TAG_KEY_LENGTH:
        raise InvalidParameter(f"'key' exceeds the maximum length of {MAX_TAG_KEY_LENGTH} characters")
    if len(tag.value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidParameter(f"'value' exceeds the maximum length of {MAX_TAG_VALUE_LENGTH} characters")
    return tag


def validate_description(description: str | None) -> str | None:
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidParameter(
            f"'description' exceeds the maximum length of {MAX_DESCRIPTION_LENGTH} characters"
        )
    return description


def validate_source(source: str | None) -> str:
    source = required(source, "source")
    if len(source) > MAX_SOURCE_LENGTH:
        raise InvalidParameter(f"'source' exceeds the maximum length of {MAX_SOURCE_LENGTH} characters")
    return source


def split_runs_source(source: str) -> tuple[str, str] | None:
    """``runs:/<run_id>/<path>`` -> (run_id, path); None for any other scheme."""
    if not source.startswith("runs:/"):
        return None
    run_id, _, path = source[len("runs:/") :].lstrip("/").partition("/")
    if not run_id:
        raise InvalidParameter(f"Invalid model version source: '{source[:300]}'. Expected runs:/<run_id>/<path>.")
    return run_id, path.strip("/")


def split_models_source(source: str) -> tuple[str, int | None] | None:
    """``models:/<logged-model-id>`` -> (id, None); ``models:/<name>/<version>`` -> (name,
    version); None for any other scheme."""
    if not source.startswith("models:/"):
        return None
    parts = source[len("models:/") :].strip("/").split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 2 and parts[0] and parts[1].isdigit():
        return parts[0], parse_version(parts[1])
    raise InvalidParameter(
        f"Invalid model version source: '{source[:300]}'. Expected models:/<model_id> or "
        "models:/<name>/<version>."
    )
