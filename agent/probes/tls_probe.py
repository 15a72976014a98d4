"""TLS step: a handshake with SNI = the target's host on one endpoint whose TCP connect worked.

Records the version, cipher and leaf-certificate hash, or the failure: a certificate for another name
or from an unknown CA, a reset or silence right after the ClientHello (what SNI filtering looks like
when TCP to the same address worked).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time

from protocol.messages import TlsResult

from ..failure_map import network_failure


async def measure_tls(
    ip: str, port: int, server_name: str, ssl_context: ssl.SSLContext, timeout: float
) -> TlsResult:
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                ip,
                port,
                ssl=ssl_context,
                server_hostname=server_name,
                ssl_handshake_timeout=timeout,
            ),
            timeout,
        )
    except Exception as exc:  # a failed handshake is a result
        failure = network_failure(exc)
        return TlsResult(
            ip, port, server_name, None, None, None, failure, time.monotonic() - started
        )
    elapsed = time.monotonic() - started
    tls = writer.get_extra_info("ssl_object")
    version = cipher = cert_hash = None
    if isinstance(tls, ssl.SSLObject):
        version = tls.version()
        cipher = (tls.cipher() or (None,))[0]
        der = tls.getpeercert(binary_form=True)
        cert_hash = hashlib.sha256(der).hexdigest() if der else None
    writer.close()
    with contextlib.suppress(Exception):  # closing is not part of the measurement
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return TlsResult(ip, port, server_name, version or "unknown", cipher, cert_hash, None, elapsed)
