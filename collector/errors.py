"""Errors the collector answers with: each maps to one HTTP status and a stable ``code``.

::

    CollectorError (status, code)     base; rendered as {"error": {"code", "message"}}
    ├── BadRequest        400         malformed body (not msgpack, not JSON, wrong content type)
    ├── Unauthorized      401         signature does not verify
    ├── Forbidden         403         unknown or revoked agent
    ├── NotFound          404
    ├── Conflict          409         same batch id, different bytes
    ├── PayloadTooLarge   413
    ├── Unprocessable     422         decodes, but the content is invalid (schema, time window)
    └── TooManyRequests   429         over a rate limit: per agent, per address, or the control helper (Retry-After)
        └── Busy          503         too many uploads in flight: back-pressure (Retry-After)

Protocol errors are translated once, in ``from_protocol_error``.
"""

from __future__ import annotations

from protocol import DecodeError, RemoteProtocolError, SchemaError, SignatureError


class CollectorError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(CollectorError):
    status, code = 400, "bad_request"


class Unauthorized(CollectorError):
    status, code = 401, "bad_signature"


class Forbidden(CollectorError):
    status, code = 403, "forbidden"


class NotFound(CollectorError):
    status, code = 404, "not_found"


class Conflict(CollectorError):
    status, code = 409, "conflict"


class PayloadTooLarge(CollectorError):
    status, code = 413, "too_large"


class Unprocessable(CollectorError):
    status, code = 422, "invalid"


class TooManyRequests(CollectorError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: str = "1", code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Busy(TooManyRequests):
    """Back-pressure: the collector is at its limit of concurrent uploads; nothing was read or stored."""

    status, code = 503, "busy"


def from_protocol_error(exc: RemoteProtocolError) -> CollectorError:
    """The HTTP error for a peer's protocol violation."""
    if isinstance(exc, SignatureError):
        return Unauthorized(
            str(exc), code="bad_key" if exc.reason == "bad_key" else "bad_signature"
        )
    if isinstance(exc, DecodeError):
        if exc.reason == "size":
            return PayloadTooLarge(str(exc))
        return BadRequest(str(exc), code="undecodable")
    if isinstance(exc, SchemaError):
        return Unprocessable(str(exc), code="schema" if exc.reason == "schema" else exc.reason)
    return BadRequest(str(exc))
