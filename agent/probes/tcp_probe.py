"""TCP step: connect to each resolved endpoint (capped), record the connect time or a failure string."""

from __future__ import annotations

import asyncio
import contextlib
import time

from protocol import TcpResult

from ..failure_map import network_failure


async def connect_once(ip: str, port: int, timeout: float) -> TcpResult:
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except Exception as exc:  # every failure is data, not an exception
        return TcpResult(ip, port, network_failure(exc), min(time.monotonic() - started, 86_400))
    elapsed = time.monotonic() - started
    writer.close()
    with contextlib.suppress(Exception):  # closing is not part of the measurement
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return TcpResult(ip, port, None, elapsed)


async def measure_tcp(
    addresses: tuple[str, ...], port: int, timeout: float, max_endpoints: int
) -> tuple[TcpResult, ...]:
    chosen = addresses[:max_endpoints]
    return tuple(await asyncio.gather(*(connect_once(ip, port, timeout) for ip in chosen)))
