"""Uploads through a SOCKS5 proxy (Tor, Psiphon, an SSH -D tunnel), with no extra dependency.

``socks5_connect`` speaks RFC 1928 CONNECT (with RFC 1929 username/password when given) over a plain
non-blocking socket and hands the connected socket back. The *proxy* resolves the collector's name
(``socks5h`` semantics): a censored network's resolver never sees which collector the agent talks to,
and a poisoned answer cannot misdirect it. ``Socks5Connector`` plugs this into aiohttp the way
aiohttp-socks does, by overriding the connector's connection hook; TLS then runs over the tunnel.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class Socks5Error(OSError):
    """The proxy refused or broke the protocol."""


@dataclass(frozen=True, slots=True)
class ProxySpec:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> ProxySpec:
        parts = urlsplit(url)
        if parts.scheme not in ("socks5", "socks5h") or not parts.hostname:
            raise ValueError(f"proxy must look like socks5://127.0.0.1:9050, got {url!r}")
        try:
            port = parts.port or 1080
        except ValueError:
            raise ValueError(f"proxy port is not a number in {url!r}") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, user, password)


async def _read_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise Socks5Error("proxy closed the connection during the handshake")
        data += chunk
    return data


def _address_field(host: str) -> bytes:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.rstrip(".").encode("idna")
        if not 0 < len(name) < 256:
            raise Socks5Error(f"host name too long for SOCKS5: {host!r}") from None
        return b"\x03" + bytes([len(name)]) + name
    return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed


async def socks5_connect(proxy: ProxySpec, host: str, port: int) -> socket.socket:
    """A socket connected through ``proxy`` to ``host:port``; the proxy resolves names."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
        methods = b"\x00\x02" if proxy.username is not None else b"\x00"
        await loop.sock_sendall(sock, b"\x05" + bytes([len(methods)]) + methods)
        version, method = await _read_exactly(loop, sock, 2)
        if version != 5 or method == 0xFF or bytes([method]) not in methods:
            raise Socks5Error("proxy accepts none of our authentication methods")
        if method == 2:
            user = (proxy.username or "").encode()
            secret = (proxy.password or "").encode()
            await loop.sock_sendall(
                sock, b"\x01" + bytes([len(user)]) + user + bytes([len(secret)]) + secret
            )
            _, status = await _read_exactly(loop, sock, 2)
            if status != 0:
                raise Socks5Error("proxy refused our username and password")
        request = b"\x05\x01\x00" + _address_field(host) + struct.pack(">H", port)
        await loop.sock_sendall(sock, request)
        version, reply, _, atyp = await _read_exactly(loop, sock, 4)
        if version != 5:
            raise Socks5Error("proxy does not speak SOCKS5")
        if reply != 0:
            raise Socks5Error(f"proxy could not connect: {REPLIES.get(reply, f'error {reply}')}")
        skip = {1: 4, 4: 16}.get(atyp)
        if skip is None:
            (skip,) = await _read_exactly(loop, sock, 1)
        await _read_exactly(loop, sock, skip + 2)  # the bound address and port: not needed
    except BaseException:
        sock.close()
        raise
    return sock


class _ProxyResolves(AbstractResolver):
    """Leave names unresolved: the proxy resolves them at its end."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": host,
                "port": port,
                "family": family,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


class Socks5Connector(aiohttp.TCPConnector):
    def __init__(self, proxy: ProxySpec, **kwargs: Any) -> None:
        super().__init__(resolver=_ProxyResolves(), use_dns_cache=False, **kwargs)
        self.proxy = proxy

    async def _wrap_create_connection(
        self,
        *args: Any,
        req: Any,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, Any]:
        kwargs.pop("addr_infos", None)
        host, port = req.url.raw_host, req.port
        try:
            sock = await asyncio.wait_for(
                socks5_connect(self.proxy, host, port), timeout.sock_connect or timeout.total
            )
        except (OSError, TimeoutError) as exc:
            problem = OSError(
                getattr(exc, "errno", None) or errno.EPROTO, f"via SOCKS5 proxy: {exc}"
            )
            raise client_error(req.connection_key, problem) from exc
        transport, protocol = await self._loop.create_connection(*args, **kwargs, sock=sock)
        return transport, protocol


def make_session(proxy: str | None) -> aiohttp.ClientSession:
    """An HTTP session for talking to collectors, through ``proxy`` when one is configured."""
    connector = Socks5Connector(ProxySpec.parse(proxy)) if proxy else aiohttp.TCPConnector()
    return aiohttp.ClientSession(connector=connector, trust_env=False)
