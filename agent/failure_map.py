"""Translate Python, aiohttp and dnspython exceptions into failure strings, once, at the boundary.

The table follows METHODOLOGY.md ("Mapping Python errors to failure strings"). Anything unknown becomes
``unknown_failure: <short text>``, never a traceback; a rising share of those means this table needs a row.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import dns.exception
import dns.resolver

from protocol import failures as F


def ssl_failure(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return F.cert_failure(getattr(exc, "verify_code", None))
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return F.EOF_ERROR
    return F.SSL_FAILED_HANDSHAKE


_errno_failure = F.errno_failure


def network_failure(exc: BaseException) -> str:
    """Failure string for a TCP, TLS or HTTP error (including aiohttp's wrappers)."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | aiohttp.ServerTimeoutError):
        return F.GENERIC_TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        return (
            ssl_failure(cert_error)
            if isinstance(cert_error, ssl.SSLError)
            else F.SSL_INVALID_CERTIFICATE
        )
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        inner = getattr(exc, "os_error", None) or exc.__cause__
        return ssl_failure(inner) if isinstance(inner, ssl.SSLError) else F.SSL_FAILED_HANDSHAKE
    if isinstance(exc, aiohttp.ServerDisconnectedError | asyncio.IncompleteReadError | EOFError):
        return F.EOF_ERROR
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _errno_failure(exc.os_error.errno) or network_failure(exc.os_error)
    if isinstance(exc, aiohttp.ClientOSError):
        return _errno_failure(exc.errno) or F.unknown_failure(str(exc))
    if isinstance(exc, ssl.SSLError):
        return ssl_failure(exc)
    if isinstance(exc, ConnectionResetError):
        # asyncio raises a bare ConnectionResetError (no errno) when the peer closes cleanly
        # during the TLS handshake: that is an EOF, not a RST.
        return F.CONNECTION_RESET if exc.errno else F.EOF_ERROR
    if isinstance(exc, OSError):
        mapped = _errno_failure(exc.errno)
        if mapped:
            return mapped
    if isinstance(exc, aiohttp.TooManyRedirects):
        return F.unknown_failure("too many redirects")
    return F.unknown_failure(f"{type(exc).__name__}: {exc}")


def dns_failure(exc: BaseException) -> str:
    """Failure string for a dnspython error."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return F.DNS_NXDOMAIN
    if isinstance(exc, dns.resolver.NoAnswer):
        return F.DNS_NO_ANSWER
    if isinstance(exc, dns.exception.Timeout):
        return F.GENERIC_TIMEOUT
    if isinstance(exc, dns.resolver.NoNameservers):
        # Each entry: (server, tcp, port, exception or rcode text, response).
        outcomes = [str(entry[3]) for entry in exc.kwargs.get("errors", [])]
        if any(text == "REFUSED" for text in outcomes):
            return F.DNS_REFUSED
        if any(text == "SERVFAIL" for text in outcomes):
            return F.DNS_SERVFAIL
        if any("Connection refused" in text for text in outcomes):
            return F.CONNECTION_REFUSED
        return F.DNS_SERVER_MISBEHAVING
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return F.unknown_failure("no DNS resolver is configured on this system")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return F.GENERIC_TIMEOUT
    if isinstance(exc, OSError | aiohttp.ClientError):
        return network_failure(exc)
    if isinstance(exc, dns.exception.DNSException):  # malformed or mismatched response
        return F.DNS_SERVER_MISBEHAVING
    return F.unknown_failure(f"{type(exc).__name__}: {exc}")
