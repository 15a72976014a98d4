"""The one exception tree of the Vantage protocol.

::

    VantageError                      base of everything Vantage raises on purpose
    ├── LocalProtocolError            *we* tried to produce something invalid (a bug here)
    └── RemoteProtocolError           a *peer* sent something invalid (their bytes, our verdict)
        ├── DecodeError               not canonical msgpack, or over a decode limit
        ├── SchemaError               decodes, but a field is missing, mistyped or out of range
        ├── SignatureError            signature or key does not verify
        └── TrustError                signed, but not acceptable: untrusted key, too few signatures,
                                      expired, rolled back (operator documents: key sets, test lists)

Like h11, the split says who is at fault: a ``LocalProtocolError`` is answered by fixing our code, a
``RemoteProtocolError`` by rejecting the input with a precise message (an HTTP 4xx on the collector).
Third-party exceptions (msgpack, cryptography) are translated here, at the boundary, with ``from exc``.
"""

from __future__ import annotations


class VantageError(Exception):
    """Base class of every error Vantage raises on purpose."""


class LocalProtocolError(VantageError):
    """We were about to produce an invalid message."""


class RemoteProtocolError(VantageError):
    """A peer sent an invalid message. ``reason`` is a short stable code for metrics and clients."""

    reason = "invalid"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DecodeError(RemoteProtocolError):
    reason = "decode"


class SchemaError(RemoteProtocolError):
    reason = "schema"


class SignatureError(RemoteProtocolError):
    reason = "signature"


class TrustError(RemoteProtocolError):
    """An operator document that verifies as bytes but must not be trusted (``reason`` says why)."""

    reason = "untrusted"
