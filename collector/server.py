"""Run the collector's app on a host and port until stopped (also used by the demo and tests)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from .app import ACCESS_LOG_FORMAT, CollectorConfig, create_app


class RunningCollector:
    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner, self.url = runner, url

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_collector(
    config: CollectorConfig, host: str = "127.0.0.1", port: int = 0, access_log: bool = False
) -> RunningCollector:
    app = create_app(config)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("vantage.access") if access_log else None,
        access_log_format=ACCESS_LOG_FORMAT,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return RunningCollector(runner, f"http://{shown}:{bound[1]}")


async def serve_forever(
    config: CollectorConfig, host: str, port: int, announce: Callable[[str], None]
) -> None:
    running = await start_collector(config, host, port, access_log=True)
    announce(running.url)
    try:
        await asyncio.Event().wait()
    finally:
        await running.stop()
