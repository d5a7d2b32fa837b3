"""Input rules of the auth API (usernames, passwords, role names) and the API token format."""

from __future__ import annotations

import hashlib
import re

from metricgate.domain.auth.entities import DEFAULT_WORKSPACE, USER_ROLE_PREFIX
from metricgate.domain.errors import InvalidParameter

MIN_PASSWORD_LENGTH = 12  # MLflow's _validate_password
MAX_USERNAME_LENGTH = 256
MAX_PASSWORD_LENGTH = 1024  # bounds the KDF's input; no real password comes near it
MAX_ROLE_NAME_LENGTH = 256

TOKEN_PREFIX = "mgt_"
TOKEN_BYTES = 32
# base64url of 32 bytes without padding is 43 characters.
_TOKEN = re.compile(r"^mgt_[A-Za-z0-9_-]{43}$")
_TOKEN_DOMAIN = b"metricgate-token-v1\0"
TOKEN_HINT_LENGTH = len(TOKEN_PREFIX) + 6


# MLflow's web UI logs out by sending ``<this prefix><random>`` as both username and password to
# ``users/current`` so that the browser's cached Basic credentials are replaced by ones that get a
# 401. Such a request is a logout, not a guess: it is refused without a lookup or a KDF, and it
# neither counts toward the failed-login limits nor writes an audit row (otherwise an office
# behind one NAT address would lock itself out by logging out). No user may take such a name.
UI_LOGOUT_PREFIX = "mlflow-logged-out-"


def is_ui_logout(username: str, password: str) -> bool:
    return username.startswith(UI_LOGOUT_PREFIX) and username == password


def check_username(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter("Username cannot be empty.")
    if len(value) > MAX_USERNAME_LENGTH:
        raise InvalidParameter(f"Username is longer than {MAX_USERNAME_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or ":" in value:
        # A colon cannot travel in HTTP Basic's "user:password"; control characters in a name
        # only ever serve to confuse logs.
        raise InvalidParameter("Username must not contain ':' or control characters")
    if value.startswith(UI_LOGOUT_PREFIX):
        raise InvalidParameter(f"Usernames starting with {UI_LOGOUT_PREFIX!r} are reserved")
    return value


def check_password(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParameter("Password cannot be empty.")
    if len(value) < MIN_PASSWORD_LENGTH:
        raise InvalidParameter(f"Password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(value) > MAX_PASSWORD_LENGTH:
        raise InvalidParameter(f"Password is longer than {MAX_PASSWORD_LENGTH} characters")
    return value


def check_role_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter("Role name cannot be empty.")
    if value.startswith(USER_ROLE_PREFIX):
        raise InvalidParameter(f"Role names starting with {USER_ROLE_PREFIX!r} are reserved")
    if len(value) > MAX_ROLE_NAME_LENGTH:
        raise InvalidParameter(f"Role name is longer than {MAX_ROLE_NAME_LENGTH} characters")
    return value


def check_workspace(value: object) -> str:
    """metricgate has one workspace; MLflow's UI names it 'default'."""
    if value is None or value == DEFAULT_WORKSPACE:
        return DEFAULT_WORKSPACE
    raise InvalidParameter(
        f"Invalid workspace {value!r}: this server has one workspace, {DEFAULT_WORKSPACE!r}"
    )


def looks_like_token(value: str) -> bool:
    return bool(_TOKEN.match(value))


def token_digest(token: str) -> bytes:
    """What the store keeps of a token. Plain SHA-256 with a domain prefix: a 256-bit random
    token cannot be guessed from its digest, keyed or not (docs/design-auth.md B3)."""
    return hashlib.sha256(_TOKEN_DOMAIN + token.encode("ascii")).digest()


def token_hint(token: str) -> str:
    return token[:TOKEN_HINT_LENGTH]
