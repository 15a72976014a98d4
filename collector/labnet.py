"""A tiny simulated internet on loopback, for the demo and the integration tests.

``LabDns`` is a real DNS server (UDP and TCP, dnspython wire format) with a zone you give it and
per-name answers a censor would give (NXDOMAIN, REFUSED, SERVFAIL, a sinkhole address, or silence).
``LabWeb`` is a real HTTP(S) server that serves a small page per Host header (optionally TLS with a
trustme certificate, redirects, extra headers, and DoH at ``/dns-query``). ``LabTrap`` accepts TCP
and then misbehaves the way middleboxes do after a TLS ClientHello (reset, close, or silence).
Nothing here leaves 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
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
    """``records`` maps a name to its addresses; ``overrides`` maps a name to an rcode name, to
    ``"SILENT"`` (no response at all, as when a censor drops the query) or to IPs."""

    records: dict[str, list[str]] = field(default_factory=dict)
    overrides: dict[str, str | list[str]] = field(default_factory=dict)

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        behaviour = self.overrides.get(name)
        if behaviour == "SILENT":
            return None
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
        response = self.zone.answer(query)
        if self.transport is not None and response is not None:
            self.transport.sendto(response.to_wire(), addr)


class LabDns:
    """UDP and TCP on the same port, like a real name server."""

    def __init__(self, zone: Zone, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zone, self.host, self.port = zone, host, port
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                response = self.zone.answer(dns.message.from_wire(await reader.readexactly(size)))
                if response is None:
                    await asyncio.sleep(3600)  # silence: hold the connection, say nothing
                    continue
                wire = response.to_wire()
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        writer.close()

    async def start(self) -> LabDns:
        loop = asyncio.get_running_loop()
        for _ in range(10):  # the UDP port may be taken for TCP: try another
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _DnsProtocol(self.zone), local_addr=(self.host, self.port)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                transport.close()
                if self.port:
                    raise
                continue
            self._transport, self.port = transport, port
            return self
        raise OSError("no free port for both UDP and TCP")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)


@dataclass(frozen=True)
class Site:
    title: str
    body: str = "Hello from a simulated site."
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. {"Location": ...}


class LabWeb:
    """One HTTP(S) server answering for many sites, chosen by the Host header.

    With ``doh_zone`` it also answers DNS-over-HTTPS queries (RFC 8484 POST) at ``/dns-query``.
    """

    def __init__(
        self,
        sites: Mapping[str, Site],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        doh_zone: Zone | None = None,
    ) -> None:
        self.sites, self.host, self.port = dict(sites), host, port
        self.ssl_context, self.doh_zone = ssl_context, doh_zone
        self._runner: web.AppRunner | None = None

    def url(self, name: str, path: str = "/") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{name}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        name = (request.host or "").rsplit(":", 1)[0].lower()
        site = self.sites.get(name)
        if site is None:
            return web.Response(status=404, text="no such site")
        page = f"<!doctype html><title>{site.title}</title><h1>{site.title}</h1><p>{site.body}</p>"
        return web.Response(
            status=site.status, text=page, content_type="text/html", headers=dict(site.headers)
        )

    async def _doh(self, request: web.Request) -> web.Response:
        if self.doh_zone is None:
            return web.Response(status=404)
        response = self.doh_zone.answer(dns.message.from_wire(await request.read()))
        if response is None:
            await asyncio.sleep(3600)
            return web.Response(status=504)
        return web.Response(body=response.to_wire(), content_type="application/dns-message")

    async def start(self) -> LabWeb:
        app = web.Application()
        app.router.add_post("/dns-query", self._doh)
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class LabTrap:
    """Accepts TCP, reads what the client sends first (a ClientHello), then misbehaves.

    ``mode``: ``reset`` (RST, as an SNI filter injects), ``close`` (a clean FIN), ``silent`` (holds the
    connection and says nothing, so the client times out).
    """

    def __init__(self, mode: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if mode not in ("reset", "close", "silent"):
            raise ValueError(f"unknown trap mode {mode!r}")
        self.mode, self.host, self.port = mode, host, port
        self._server: asyncio.Server | None = None
        self._held: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(4096), 5.0)
        if self.mode == "silent":
            self._held.add(writer)  # closed in stop()
            return
        if self.mode == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        writer.close()

    async def start(self) -> LabTrap:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in self._held:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
