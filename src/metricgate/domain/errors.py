"""Error tree; every error carries the MLflow ``error_code`` the client branches on.

    MetricgateError                      INTERNAL_ERROR (500)
    ├── InvalidParameter                 INVALID_PARAMETER_VALUE (400)
    │   └── BadRequest                   BAD_REQUEST (400)
    ├── NotFound                         RESOURCE_DOES_NOT_EXIST (404)
    │   └── EndpointNotFound             ENDPOINT_NOT_FOUND (404)
    ├── AlreadyExists                    RESOURCE_ALREADY_EXISTS (400)
    ├── Conflict                         RESOURCE_CONFLICT (409)
    ├── PayloadTooLarge                  INVALID_PARAMETER_VALUE (413)
    ├── NotImplementedYet                NOT_IMPLEMENTED (501)
    └── Unavailable                      TEMPORARILY_UNAVAILABLE (503, Retry-After)

Only ``api/middleware.py`` turns these into HTTP responses. Messages reach clients, so they
must never contain SQL, DSNs or stack traces.
"""

from __future__ import annotations

# MLflow's ERROR_CODE_TO_HTTP_STATUS (mlflow/exceptions.py), the subset we emit plus the
# codes a client could legitimately expect to see.
HTTP_STATUS_BY_CODE: dict[str, int] = {
    "INTERNAL_ERROR": 500,
    "INVALID_STATE": 500,
    "DATA_LOSS": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "RESOURCE_EXHAUSTED": 429,
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "CUSTOMER_UNAUTHORIZED": 401,
    "CANCELLED": 499,
    "RESOURCE_CONFLICT": 409,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "NOT_IMPLEMENTED": 501,
    "DEADLINE_EXCEEDED": 504,
}


class MetricgateError(Exception):
    """Base class; unexpected failures surface as INTERNAL_ERROR."""

    error_code = "INTERNAL_ERROR"
    http_status: int | None = None  # None: derived from error_code
    # More fields of the error body, beside error_code and message (an approval request's id).
    extra_fields: dict[str, object] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status(self) -> int:
        if self.http_status is not None:
            return self.http_status
        return HTTP_STATUS_BY_CODE.get(self.error_code, 500)


class InvalidParameter(MetricgateError):
    error_code = "INVALID_PARAMETER_VALUE"


class QueryTimeout(InvalidParameter):
    """A client-shaped read ran past the read statement timeout. A 400, not a 503 or 504: the
    mlflow client retries 5xx up to seven times, and the same query would hit the same limit."""


class BadRequest(InvalidParameter):
    error_code = "BAD_REQUEST"


class NotFound(MetricgateError):
    error_code = "RESOURCE_DOES_NOT_EXIST"


class EndpointNotFound(NotFound):
    error_code = "ENDPOINT_NOT_FOUND"


class AlreadyExists(MetricgateError):
    error_code = "RESOURCE_ALREADY_EXISTS"


class Conflict(MetricgateError):
    error_code = "RESOURCE_CONFLICT"


class PermissionDenied(MetricgateError):
    """A check a route's declared access rule cannot express: another user's tokens, a shared
    role's grants, a vote on one's own approval request (HTTP 403, MLflow's PERMISSION_DENIED)."""

    error_code = "PERMISSION_DENIED"

    def __init__(self, message: str = "Permission denied") -> None:
        super().__init__(message)


class Unauthenticated(MetricgateError):
    """No verified caller where one is needed; the access middleware answers requests without
    credentials before any handler runs, so this is a handler's or store's own guard."""

    error_code = "UNAUTHENTICATED"


class PayloadTooLarge(InvalidParameter):
    http_status = 413


class NotImplementedYet(MetricgateError):
    error_code = "NOT_IMPLEMENTED"


class Unavailable(MetricgateError):
    """A dependency is down or overloaded; the client retries after ``retry_after_s``."""

    error_code = "TEMPORARILY_UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreUnavailable(Unavailable):
    """The metadata database cannot be reached."""
