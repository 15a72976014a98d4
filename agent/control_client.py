"""Ask the collector's control helper (``POST /api/v1/control``) how a URL looks from outside.

A control is a help, not a requirement: any problem reaching it (down, rate-limited, refusing the
target, answering nonsense) means "no control", and the verdict falls back to the local rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import aiohttp

from protocol import RemoteProtocolError
from protocol.messages import ControlResult, from_peer

log = logging.getLogger("vantage.agent")


class ControlClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/api/v1/control"
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def measure(self, url: str, addresses: Sequence[str] = ()) -> ControlResult | None:
        body = {"url": url, "addrs": list(addresses)[:16]}
        try:
            async with self.session.post(self.url, json=body, timeout=self.timeout) as response:
                text = await response.text()
                if response.status != 200:
                    log.info("control helper answered %s for %s", response.status, url)
                    return None
                document = json.loads(text)
            return from_peer(lambda: ControlResult.from_wire(document))
        except (aiohttp.ClientError, TimeoutError, ValueError, RemoteProtocolError) as exc:
            log.info("no control for %s: %s", url, exc or type(exc).__name__)
            return None
