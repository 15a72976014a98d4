"""Failure strings: the fixed vocabulary a measurement uses to say *how* a step failed.

OONI-compatible (df-007) so results can be compared with OONI's. A measurement carries either ``None``
(the step worked) or one of these strings; free text only ever follows ``unknown_failure: ``.
"""

from __future__ import annotations

import errno
from typing import Final

DNS_NXDOMAIN: Final = "dns_nxdomain_error"
DNS_BOGON: Final = "dns_bogon_error"
DNS_NO_ANSWER: Final = "dns_no_answer"
DNS_REFUSED: Final = "dns_refused_error"
DNS_SERVFAIL: Final = "dns_servfail_error"
DNS_SERVER_MISBEHAVING: Final = "dns_server_misbehaving"
CONNECTION_REFUSED: Final = "connection_refused"
CONNECTION_RESET: Final = "connection_reset"
CONNECTION_ABORTED: Final = "connection_aborted"
GENERIC_TIMEOUT: Final = "generic_timeout_error"
EOF_ERROR: Final = "eof_error"
HOST_UNREACHABLE: Final = "host_unreachable"
NETWORK_UNREACHABLE: Final = "network_unreachable"
SSL_INVALID_HOSTNAME: Final = "ssl_invalid_hostname"
SSL_INVALID_CERTIFICATE: Final = "ssl_invalid_certificate"
SSL_UNKNOWN_AUTHORITY: Final = "ssl_unknown_authority"
SSL_FAILED_HANDSHAKE: Final = "ssl_failed_handshake"

UNKNOWN_PREFIX: Final = "unknown_failure: "
UNKNOWN_TEXT_MAX: Final = 200

#: Every known failure string, with the step(s) it may appear in.
KNOWN_FAILURES: Final[dict[str, frozenset[str]]] = {
    DNS_NXDOMAIN: frozenset({"dns"}),
    DNS_BOGON: frozenset({"dns"}),
    DNS_NO_ANSWER: frozenset({"dns"}),
    DNS_REFUSED: frozenset({"dns"}),
    DNS_SERVFAIL: frozenset({"dns"}),
    DNS_SERVER_MISBEHAVING: frozenset({"dns"}),
    CONNECTION_REFUSED: frozenset({"tcp", "tls", "http"}),
    CONNECTION_RESET: frozenset({"tcp", "tls", "http"}),
    CONNECTION_ABORTED: frozenset({"tcp", "tls", "http"}),
    GENERIC_TIMEOUT: frozenset({"dns", "tcp", "tls", "http"}),
    EOF_ERROR: frozenset({"tls", "http"}),
    HOST_UNREACHABLE: frozenset({"tcp", "tls", "http"}),
    NETWORK_UNREACHABLE: frozenset({"tcp", "tls", "http"}),
    SSL_INVALID_HOSTNAME: frozenset({"tls", "http"}),
    SSL_INVALID_CERTIFICATE: frozenset({"tls", "http"}),
    SSL_UNKNOWN_AUTHORITY: frozenset({"tls", "http"}),
    SSL_FAILED_HANDSHAKE: frozenset({"tls", "http"}),
}


def unknown_failure(text: str) -> str:
    """The failure string for an error the mapping does not know yet (one line, bounded length)."""
    printable = "".join(" " if ord(ch) < 0x20 else ch for ch in str(text))
    one_line = " ".join(printable.split()) or "no detail"
    return UNKNOWN_PREFIX + one_line[:UNKNOWN_TEXT_MAX]


def is_failure_string(value: str) -> bool:
    """True if ``value`` is a known failure string or a well-formed ``unknown_failure: ...``."""
    if value in KNOWN_FAILURES:
        return True
    if value.startswith(UNKNOWN_PREFIX):
        rest = value[len(UNKNOWN_PREFIX) :]
        return 0 < len(rest) <= UNKNOWN_TEXT_MAX and all(ord(ch) >= 0x20 for ch in rest)
    return False


#: errno of an ``OSError`` (also inside aiohttp's wrappers) to failure string (METHODOLOGY.md).
ERRNO_FAILURES: Final[dict[int, str]] = {
    errno.ECONNREFUSED: CONNECTION_REFUSED,
    errno.ECONNRESET: CONNECTION_RESET,
    errno.ECONNABORTED: CONNECTION_ABORTED,
    errno.ETIMEDOUT: GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.EPIPE: CONNECTION_RESET,
}

# OpenSSL X509_V_ERR_* codes carried by ssl.SSLCertVerificationError.verify_code
_HOSTNAME_MISMATCH: Final = 62
_UNKNOWN_AUTHORITY: Final = frozenset({18, 19, 20, 21})


def errno_failure(err: int | None) -> str | None:
    """The failure string for an errno, or None when the table has no row for it."""
    return ERRNO_FAILURES.get(err) if err is not None else None


def cert_failure(verify_code: int | None) -> str:
    """The failure string for a certificate that did not verify (OpenSSL's verify code)."""
    if verify_code == _HOSTNAME_MISMATCH:
        return SSL_INVALID_HOSTNAME
    if verify_code in _UNKNOWN_AUTHORITY:
        return SSL_UNKNOWN_AUTHORITY
    return SSL_INVALID_CERTIFICATE


#: DNS response codes (their text form) that mean the resolver refused or failed to answer.
RCODE_FAILURES: Final[dict[str, str]] = {
    "NXDOMAIN": DNS_NXDOMAIN,
    "REFUSED": DNS_REFUSED,
    "SERVFAIL": DNS_SERVFAIL,
}


def rcode_failure(rcode: str) -> str | None:
    """None for NOERROR; the failure string for any other response code."""
    if rcode == "NOERROR":
        return None
    return RCODE_FAILURES.get(rcode, DNS_SERVER_MISBEHAVING)
