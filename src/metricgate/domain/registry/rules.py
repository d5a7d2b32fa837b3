"""MLflow's registry rules as pure functions: names, stages, aliases, versions, tag limits, and
which model-version sources may be stored."""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from typing import Literal, NamedTuple

from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.entities import Tag
from metricgate.domain.tracking.rules import validate_key

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
    if (
        not (text.isascii() and text.isdigit())
        or len(text) > 10
        or not 1 <= int(text) <= MAX_VERSION
    ):
        if raw is None or text == "":
            raise InvalidParameter("Missing value for required parameter 'version'.")
        raise InvalidParameter(
            f"Parameter 'version' must be a positive integer, got '{str(raw)[:100]}'."
        )
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
        raise InvalidParameter(
            f"'key' exceeds the maximum length of {MAX_TAG_KEY_LENGTH} characters"
        )
    if len(tag.value) > MAX_TAG_VALUE_LENGTH:
        raise InvalidParameter(
            f"'value' exceeds the maximum length of {MAX_TAG_VALUE_LENGTH} characters"
        )
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
        raise InvalidParameter(
            f"'source' exceeds the maximum length of {MAX_SOURCE_LENGTH} characters"
        )
    return source


def split_runs_source(source: str) -> tuple[str, str] | None:
    """``runs:/<run_id>/<path>`` -> (run_id, path); None for any other scheme."""
    if not source.startswith("runs:/"):
        return None
    run_id, _, path = source[len("runs:/") :].lstrip("/").partition("/")
    if not run_id:
        raise InvalidParameter(
            f"Invalid model version source: '{source[:300]}'. Expected runs:/<run_id>/<path>."
        )
    return run_id, path.strip("/")


def split_models_source(source: str) -> tuple[str, int | None] | None:
    """``models:/<logged-model-id>`` -> (id, None); ``models:/<name>/<version>`` -> (name,
    version); None for any other scheme."""
    if not source.startswith("models:/"):
        return None
    parts = source[len("models:/") :].strip("/").split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 2 and parts[0] and parts[1].isascii() and parts[1].isdigit():
        return parts[0], parse_version(parts[1])
    raise InvalidParameter(
        f"Invalid model version source: '{source[:300]}'. Expected models:/<model_id> or "
        "models:/<name>/<version>."
    )


# ------------------------------------------------------------ model-version sources
#
# A version's source becomes the location get-download-uri hands out and get-artifact reads, so
# it is checked before anything is stored, with stock MLflow's rules (mlflow/server/handlers.py,
# _validate_source_run / _validate_source_model / _validate_non_local_source_contains_relative_paths):
# - no scheme may carry a relative path (``..`` or ``.`` segments, however percent-encoded), a
#   backslash or a control character (NUL included);
# - a local path (no scheme, or ``file:``) needs ``run_id`` (or ``model_id``) and must lie inside
#   that run's (logged model's) artifact directory, which must itself be local;
# - an ``mlflow-artifacts:`` URI, or an http(s) URI of the proxied artifact route, must lie inside
#   the artifact location of the run (logged model) that ``run_id`` (``model_id``) names;
# - ``runs:/`` and ``models:/<model_id>`` must name the same run / logged model as ``run_id`` /
#   ``model_id`` when those are given. Unlike stock we accept them without the ids and fill the
#   ids in from the source (what this server has always done; the location it then stores is
#   inside the named resource by construction, since the path cannot climb out of it).
# Anything else (s3://, gs://, ...) is stored as given once it passes the traversal check, as stock
# does: the client reads it directly and this server never serves it (get-artifact only serves
# locations under its own artifact root).

OwnerField = Literal["run_id", "model_id"]
SourceKind = Literal["local", "proxied", "runs", "models", "other"]

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_PROXIED_ROUTE = ("api", "2.0", "mlflow-artifacts", "artifacts")
# Hosts a file: URI may name and still be this machine (stock's is_local_uri).
_LOCAL_FILE_HOSTS = ("", "localhost", "127.0.0.1", ".")


class SourceOwner(NamedTuple):
    """The resource whose artifact location must contain a source: which request field named
    it (``run_id`` or ``model_id``) and its id."""

    field: OwnerField
    ident: str


def _short(source: str) -> str:
    return source[:300]


def _relative_source(source: str) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid model version source: '{_short(source)}'. If supplying a source as an http, https, "
        "local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be "
        "provided without relative path references present. Please provide an absolute path."
    )


def _not_contained(source: str, field: OwnerField) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid model version source: '{_short(source)}'. The {field} request parameter must "
        "identify the resource that contains the source."
    )


def _local_not_contained(source: str, field: OwnerField) -> InvalidParameter:
    owner = "run" if field == "run_id" else "logged model"
    return InvalidParameter(
        f"Invalid model version source: '{_short(source)}'. To use a local path as a model version "
        f"source, the {field} request parameter has to be specified and the local path has to be "
        f"contained within the artifact directory of the {owner} specified by the {field}."
    )


def _fully_unquoted(value: str) -> str:
    """``value`` percent-decoded until it no longer changes: ``%252e%252e`` is ``..`` too."""
    while (unquoted := urllib.parse.unquote_plus(value)) != value:
        value = unquoted
    return value


def _split(uri: str) -> urllib.parse.SplitResult | None:
    try:
        return urllib.parse.urlsplit(uri)
    except ValueError:  # e.g. an unbalanced IPv6 bracket in the authority
        return None


def reject_relative_source(source: str) -> None:
    """Refuse a source that could climb out of wherever it is resolved, in any scheme: ``..``
    or ``.`` segments (plain or percent-encoded, any number of times), backslashes (a Windows
    separator an object store or a path join may honour), control characters (NUL truncates
    paths), and a path that is not absolute (stock resolves it against the server's cwd)."""
    decoded = _fully_unquoted(source)
    if "\\" in decoded or _CONTROL_RE.search(decoded) or ".." in decoded.split("/"):
        raise _relative_source(source)
    parts = _split(decoded)
    if parts is None:
        raise _relative_source(source)
    path = re.sub(r"/+", "/", parts.path).rstrip("/")
    if not path.startswith("/") or posixpath.normpath(path) != path:
        raise _relative_source(source)


def source_kind(source: str) -> SourceKind:
    """How a source is checked (see the section comment). ``source`` passed
    :func:`reject_relative_source`."""
    parts = _split(source)
    if parts is None:
        raise _relative_source(source)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        if scheme == "file" and (parts.hostname or "") not in _LOCAL_FILE_HOSTS:
            # Another machine's disk (a UNC path, as stock reads it): never ours to vouch for.
            raise InvalidParameter(
                f"Invalid model version source: '{_short(source)}'. A file: URI must not name a remote host."
            )
        return "local"
    if scheme == "mlflow-artifacts":
        return "proxied"
    if scheme in ("http", "https"):
        segments = _uri_parts(source)[2]
        width = len(_PROXIED_ROUTE)
        if any(segments[i : i + width] == _PROXIED_ROUTE for i in range(len(segments) - width + 1)):
            return "proxied"
        return "other"
    if scheme == "runs":
        return "runs"
    if scheme == "models":
        return "models"
    return "other"


def source_owner(source: str, run_id: str | None, model_id: str | None) -> SourceOwner | None:
    """Check everything about ``source`` that needs no lookup, and say whose artifact location
    must contain it (None: nobody's). ``model_id`` takes precedence over ``run_id``, as in stock
    (register_model sends both for a run's logged model)."""
    reject_relative_source(source)
    kind = source_kind(source)
    field: OwnerField = "model_id" if model_id else "run_id"
    ident = model_id or run_id
    if kind == "local":
        if not ident:
            raise _local_not_contained(source, "run_id")
        return SourceOwner(field, ident)
    if kind == "proxied":
        if not ident:
            raise _not_contained(source, "run_id")
        return SourceOwner(field, ident)
    parts = _split(source)
    assert parts is not None  # source_kind split it
    if kind == "runs":
        if parts.netloc or model_id:
            raise _not_contained(source, "model_id" if model_id else "run_id")
        named = split_runs_source(source)
        if named is None or (run_id and named[0] != run_id):
            raise _not_contained(source, "run_id")
    elif kind == "models":
        if parts.netloc:  # models://<profile>/...: another registry
            raise _not_contained(source, "model_id")
        named_model = split_models_source(source)
        if (
            named_model is not None
            and named_model[1] is None
            and model_id
            and named_model[0] != model_id
        ):
            raise _not_contained(source, "model_id")
    return None


# ------------------------------------------------------------ host-addressed sources
#
# Stock 3.17.2 (handlers._validate_artifact_uri_scheme, store/artifact/host_policy.py) refuses,
# before any other check, a source whose scheme makes an artifact repository connect to the host
# the URI names (GHSA-mr9f-g8qf-4w4j), unless that host is the one of the server's own artifact
# root or the operator allows the scheme. metricgate's artifact root is a file: or s3: URI, which
# names no such host, so every host-addressed source is refused unless its scheme is allowed.
# metricgate itself never reads a version's source from another host, but a source the stock
# server refuses must not be one that a client (or a stock server sharing the data) later follows.
HOST_ADDRESSED_SCHEMES = frozenset(
    {"ftp", "sftp", "hdfs", "viewfs", "http", "https", "mlflow-artifacts", "r2", "b2", "abfss"}
)


def reject_host_addressed_source(
    source: str, allowed_schemes: frozenset[str] = frozenset()
) -> None:
    """Refuse a source that addresses a host (``http://host/...``, ``ftp:///x``,
    ``mlflow-artifacts://host/...``; not ``mlflow-artifacts:/...``, which is this server) unless its
    scheme is in ``allowed_schemes`` (lower case). Stock's message, with metricgate's setting in
    place of MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES."""
    parts = _split(source)
    if parts is None:
        return  # not a URI: reject_relative_source refuses it
    scheme = parts.scheme.lower()
    if scheme not in HOST_ADDRESSED_SCHEMES or scheme in allowed_schemes:
        return
    if scheme == "mlflow-artifacts" and not parts.netloc:
        return
    raise InvalidParameter(
        f"'source' cannot use the '{scheme}' scheme: the '{scheme}' scheme addresses a host other "
        "than the tracking server's configured artifact storage, so the server would connect to "
        f"the host named in the URI. To allow it, add '{scheme}' to "
        "METRICGATE_ALLOWED_HOST_SOURCE_SCHEMES."
    )


# ------------------------------------------------------------ registered-model sources (lineage)


class ModelsSource(NamedTuple):
    """A parsed ``models:/`` URI, as stock's ``_parse_model_uri``: exactly one of ``model_id``
    (``models:/<id>``), or ``name`` with at most one of ``version``, ``stage``, ``alias`` (none:
    the latest version, ``models:/<name>/latest``)."""

    model_id: str | None = None
    name: str | None = None
    version: str | None = None
    stage: str | None = None
    alias: str | None = None


def parse_models_source(source: str) -> ModelsSource | None:
    """Stock 3.17.2's parse of a ``models:/`` source (``_resolve_registered_model_source_lineage``
    with ``_parse_model_uri``); None for another scheme. ``models://<profile>/...`` (another
    registry) and malformed URIs are 400 INVALID_PARAMETER_VALUE."""
    try:
        parsed = urllib.parse.urlparse(source, allow_fragments=False)
    except ValueError:
        return None  # not a URI: reject_relative_source refuses it
    if parsed.scheme != "models":
        return None
    if parsed.netloc:
        raise InvalidParameter(
            f"Invalid model version source: '{_short(source)}'. Registered model sources must use "
            "the active model registry."
        )
    path = parsed.path
    parts = path.lstrip("/").split("/")
    if not path.startswith("/") or len(path) <= 1 or len(parts) > 2 or not parts[0].strip():
        raise _not_contained(source, "model_id")
    if len(parts) == 2:
        name, suffix = parts
        if not suffix.strip():
            raise _not_contained(source, "model_id")
        if suffix.isascii() and suffix.isdigit():
            return ModelsSource(name=name, version=suffix)
        if suffix.lower() == "latest":
            return ModelsSource(name=name)
        return ModelsSource(name=name, stage=suffix)
    if "@" in path:
        name, _, alias = parts[0].rpartition("@")
        if not alias.strip():
            raise _not_contained(source, "model_id")
        return ModelsSource(name=name, alias=alias)
    return ModelsSource(model_id=parts[0])


def check_lineage(source: str, run_id: str | None, model_id: str | None, version_run_id: str | None,
                  version_model_id: str | None) -> None:  # fmt: skip
    """A ``models:/<name>/...`` source registers a copy of an existing version: the request's
    ``run_id`` / ``model_id``, when given, must be the ones of that version (stock's
    ``_resolve_registered_model_source_lineage``); missing ones are taken from it."""
    if (run_id is not None and run_id != (version_run_id or "")) or (
        model_id is not None and model_id != (version_model_id or "")
    ):
        raise InvalidParameter(
            f"Invalid model version source: '{_short(source)}'. The run_id and model_id request "
            "parameters must match the referenced model version."
        )


def prompt_source(source: str) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid model version source: '{_short(source)}'. Prompt versions cannot be used as model "
        "version sources."
    )


def _uri_parts(uri: str) -> tuple[str, str, tuple[str, ...]]:
    """(scheme, authority, decoded non-empty path segments), both names lower-cased."""
    parts = _split(uri)
    if parts is None:
        return "", "", ()
    segments = tuple(_fully_unquoted(p) for p in parts.path.split("/") if p)
    return parts.scheme.lower(), parts.netloc.lower(), segments


def check_source_within(source: str, owner: SourceOwner, owner_root: str | None) -> None:
    """Refuse ``source`` unless it lies inside ``owner_root``, the artifact location of the run or
    logged model ``owner`` names (None: no such resource). Compared segment by segment after
    decoding, so ``/root/artifacts-other`` is not inside ``/root/artifacts``."""
    local = source_kind(source) == "local"
    if owner_root is None:
        raise (_local_not_contained if local else _not_contained)(source, owner.field)
    source_scheme, source_authority, source_segments = _uri_parts(source)
    root_scheme, root_authority, root_segments = _uri_parts(owner_root)
    if local:
        # Both sides must be local; "file:" and a bare path name the same place.
        root_parts = _split(owner_root)
        inside = (
            root_parts is not None
            and root_scheme in ("", "file")
            and (root_parts.hostname or "") in _LOCAL_FILE_HOSTS
        )
    else:
        inside = source_scheme == root_scheme and source_authority == root_authority
    inside = (
        inside and bool(root_segments) and source_segments[: len(root_segments)] == root_segments
    )
    if not inside:
        raise (_local_not_contained if local else _not_contained)(source, owner.field)
