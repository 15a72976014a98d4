"""A two-view loopback internet for the measurement-engine tests.

The *true* view (what the collector's control helper sees) resolves ``site.test`` to 127.0.0.1, where a
real HTTPS/HTTP server runs. The *censored* view (the agent's resolver) may answer differently: another
loopback address (127.0.0.2) on the same port where a middlebox stands in (a wrong certificate, a
reset, a blockpage, silence), an rcode, silence, or a bogon. Both addresses map to one AS in the
control's ASN lookup (a CDN with two servers), so DNS counts as consistent and the verdict blames the
step that really failed.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from agent.probes.dns_probe import ResolverSpec
from agent.web_connectivity import ProbeSettings, measure_target, open_run
from collector.app import CollectorConfig
from collector.control import ControlHelper, ControlSettings
from collector.labnet import LabDns, LabWeb, Site, Zone
from collector.server import RunningCollector
from protocol import Measurement, NetworkContext, Target

AGENT_ID = "ab" * 16
NETWORK = NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile")
TRUE_IP, MIDDLEBOX_IP = "127.0.0.1", "127.0.0.2"
CDN_ASNS = {TRUE_IP: 64496, MIDDLEBOX_IP: 64496}
SITE = "site.test"
PAGE = Site("Independent Newsroom Frontpage", "Reporting from everywhere, every single day." * 20)


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@dataclass
class Lab:
    ca: trustme.CA
    ca_file: Path
    web: LabWeb  # the true site, TLS
    plain: LabWeb  # the true site, plain HTTP
    honest: LabDns
    censor: LabDns
    collector: RunningCollector
    helper: ControlHelper
    cleanup: list[object] = field(default_factory=list)

    def settings(self, *, control: bool = True, **extra: object) -> ProbeSettings:
        values: dict[str, object] = {
            "resolver": ResolverSpec.parse(self.censor.address),
            "timeout": 1.0,
            "ca_file": str(self.ca_file),
            "routable_prefixes": ("127.0.0.0/8",),
            "control_url": self.collector.url if control else None,
        }
        values.update(extra)
        return ProbeSettings(**values)  # type: ignore[arg-type]

    def censor_answers(self, name: str, behaviour: str | list[str]) -> None:
        self.censor.zone.overrides[name] = behaviour

    async def measure(self, url: str, *, control: bool = True, **extra: object) -> Measurement:
        async with open_run(self.settings(control=control, **extra)) as run:
            return await measure_target(Target(url, "international"), AGENT_ID, NETWORK, run)


@asynccontextmanager
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:

    ca = trustme.CA()
    ca_file = tmp_path / "lab-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    web = await LabWeb({SITE: PAGE}, TRUE_IP, ssl_context=server_context(ca, SITE)).start()
    plain = await LabWeb({SITE: PAGE}, TRUE_IP).start()
    records = {SITE: [TRUE_IP]}
    honest = await LabDns(Zone(dict(records))).start()
    censor = await LabDns(Zone(dict(records))).start()
    settings = ControlSettings(lab=True, resolver=honest.address, ca_file=str(ca_file), timeout=1.0)
    helper = ControlHelper(settings, asn_lookup=CDN_ASNS.get)
    config = CollectorConfig(db_path=tmp_path / "collector.db", control=settings)
    collector = await _start(config, helper)
    running = Lab(ca, ca_file, web, plain, honest, censor, collector, helper)
    try:
        yield running
    finally:
        await collector.stop()
        for server in (web, plain, honest, censor):
            await server.stop()


async def _start(config: CollectorConfig, helper: ControlHelper) -> RunningCollector:
    from aiohttp import web

    from collector.app import create_app

    runner = web.AppRunner(create_app(config, control_helper=helper), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return RunningCollector(runner, f"http://127.0.0.1:{runner.addresses[0][1]}")


def full_backlog(host: str, port: int) -> list[socket.socket]:
    """A listening socket nobody accepts on, its queue filled: new connects hang (a timeout)."""
    listener = socket.socket()
    listener.bind((host, port))
    listener.listen(0)
    held = [listener]
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        with suppress(BlockingIOError):
            client.connect((host, port))
        held.append(client)
    return held
