"""Telling people when a disruption opens or closes: signed webhooks and an Atom feed.

Webhook body: ``{"event": "open"|"update"|"close"|"retract", "disruption": {...item of GET
/api/v1/disruptions...}, "sent_at": "..."}`` (JSON). It is signed with the collector's Ed25519 key over
``b"vantage/alert/v1\\x00" + body``; the base64 signature is in ``X-Vantage-Signature``, and a receiver
checks it against the key at ``GET /api/v1/collector-key`` (the one agents pin for receipts).

Delivery never blocks ingest or detection: events go into a bounded in-memory queue; one task per
(event, URL) posts it and retries with exponential backoff on errors and non-2xx answers. An event still
undelivered after the last attempt is logged and dropped; the Atom feed and ``disruption_events`` keep the
full record, so a receiver that was down can catch up from the feed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Sequence
from typing import Any, Final
from xml.etree import ElementTree as ET

import aiohttp

from protocol import SigningKey, utc_now
from protocol.signing import verify

DOMAIN_ALERT: Final = b"vantage/alert/v1"
SIGNATURE_HEADER: Final = "X-Vantage-Signature"
ATOM_NS: Final = "http://www.w3.org/2005/Atom"

log = logging.getLogger("vantage.alerts")


def sign_alert(key: SigningKey, body: bytes) -> str:
    return base64.b64encode(key.sign(DOMAIN_ALERT, body)).decode()


def verify_alert(public_key: bytes, body: bytes, signature_b64: str) -> None:
    """Raise ``protocol.SignatureError`` unless the collector with ``public_key`` signed ``body``."""
    verify(public_key, DOMAIN_ALERT, body, base64.b64decode(signature_b64))


def alert_body(kind: str, item: dict[str, Any]) -> bytes:
    document = {"event": kind, "disruption": item, "sent_at": utc_now().isoformat()}
    return json.dumps(document, sort_keys=True).encode()


class WebhookSender:
    """Posts signed alerts to ``urls``; ``submit`` never waits."""

    def __init__(
        self,
        urls: Sequence[str],
        key: SigningKey,
        *,
        attempts: int = 6,
        first_delay: float = 1.0,
        timeout: float = 10.0,
        max_pending: int = 1000,
    ) -> None:
        self.urls = tuple(urls)
        self.key = key
        self.attempts = attempts
        self.first_delay = first_delay
        self.timeout = timeout
        self.max_pending = max_pending
        self.delivered = 0
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def submit(self, kind: str, item: dict[str, Any]) -> None:
        if not self.urls or self._session is None:
            return
        body = alert_body(kind, item)
        for url in self.urls:
            if len(self._tasks) >= self.max_pending:
                self.dropped += 1
                log.warning("alert queue full: dropping %s alert for %s", kind, url)
                continue
            task = asyncio.create_task(self._deliver(url, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: bytes) -> None:
        assert self._session is not None
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_alert(self.key, body)}
        problem = ""
        for attempt in range(self.attempts):
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    if 200 <= response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.first_delay * 2**attempt)
        self.dropped += 1
        log.warning("webhook %s: giving up after %d attempts (%s)", url, self.attempts, problem)


def _title(kind: str, item: dict[str, Any]) -> str:
    where = f"{item['region']} AS{item['asn']} {item['carrier']} ({item['network_type']})"
    what = item["pattern"] + (f" of {item['domain']}" if item.get("domain") else "")
    verb = {"open": "opened", "close": "closed", "update": "updated", "retract": "retracted"}
    return f"{what} {verb.get(kind, kind)}: {item['country']} {where}"


def render_atom(events: Sequence[tuple[str, str, dict[str, Any]]], self_url: str) -> bytes:
    """An Atom 1.0 feed (RFC 4287) of disruption events, newest first."""
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", "urn:vantage:disruptions")
    sub(feed, "title", "Vantage: disruptions opened and closed")
    sub(feed, "updated", _atom_time(events[0][1]) if events else _atom_time(None))
    sub(feed, "link", rel="self", href=self_url)
    author = sub(feed, "author")
    sub(author, "name", "vantage collector")
    for kind, at, item in events:
        entry = sub(feed, "entry")
        sub(entry, "id", f"urn:vantage:disruption:{item['id']}:{kind}:{at}")
        sub(entry, "title", _title(kind, item))
        sub(entry, "updated", _atom_time(at))
        sub(entry, "category", term=item["pattern"])
        summary = (
            f"{item['severity']} {item['pattern']} since {item['started_at']}"
            + (f" until {item['ended_at']}" if item.get("ended_at") else " (ongoing)")
            + f"; baseline {item['baseline']}, current {item['current']}, {item['agents']} agents"
        )
        sub(entry, "summary", summary)
        sub(entry, "content", json.dumps(item, sort_keys=True), type="text")
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))


def _atom_time(at: str | None) -> str:
    if at is None:
        return "1970-01-01T00:00:00Z"
    return at[:19] + "Z"  # RFC 3339 without the microseconds
