"""A tiny simulated internet on loopback, for the demo and the integration tests.

``LabDns`` is a real DNS server (UDP, dnspython wire format) with a zone you give it and per-name
answers a censor would give (NXDOMAIN, REFUSED, SERVFAIL, or a sinkhole address). ``LabWeb`` is a real
HTTP server that serves a small page per Host header. Nothing here leaves 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from aiohttp import web


@dataclass
class Zone:
    """``records`` maps a name to its addresses; ``overrides`` maps a name to an rcode name or IPs."""

    records: dict[str, list[str]] = field(default_factory=dict)
    overrides: dict[str, str | list[str]] = field(default_factory=dict)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        behaviour = self.overrides.get(name)
        if isinstance(behaviour, str):
            response.set_rcode(dns.rcode.from_text(behaviour))
            return response
        addresses = behaviour if behaviour is not None else self.records.get(name)
        if addresses is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        wanted = question.rdtype
        for ip in addresses:
            kind = dns.rdatatype.AAAA if ":" in ip else dns.rdatatype.A
            if kind == wanted:
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", kind, ip))
        return response


class _DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: Python 3.11's selector transport does not subclass it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:  # garbage in: a real server stays silent
            return
        if self.transport is not None:
            self.transport.sendto(self.zone.answer(query).to_wire(), addr)


class LabDns:
    def __init__(self, zone: Zone, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zone, self.host, self.port = zone, host, port
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> LabDns:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _DnsProtocol(self.zone), local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass(frozen=True)
class Site:
    title: str
    body: str = "Hello from a simulated site."
    status: int = 200


class LabWeb:
    """One HTTP server answering for many sites, chosen by the Host header."""

    def __init__(self, sites: Mapping[str, Site], host: str = "127.0.0.1", port: int = 0) -> None:
        self.sites, self.host, self.port = dict(sites), host, port
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        name = (request.host or "").rsplit(":", 1)[0].lower()
        site = self.sites.get(name)
        if site is None:
            return web.Response(status=404, text="no such site")
        page = f"<!doctype html><title>{site.title}</title><h1>{site.title}</h1><p>{site.body}</p>"
        return web.Response(status=site.status, text=page, content_type="text/html")

    async def start(self) -> LabWeb:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
