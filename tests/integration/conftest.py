"""Shared fixtures for the integration suite: real servers on 127.0.0.1, real SQLite, real CLI.

Nothing here mocks the code under test. The collector is the real aiohttp app (served by
``aiohttp_client`` over TCP, or by ``collector.server.start_collector``), DNS is ``LabDns`` (a real
UDP server), the web is ``LabWeb`` (a real HTTP server), and the CLI runs as ``python -m vantagepoint``
in a subprocess, driven with ``asyncio.create_subprocess_exec`` so the event loop keeps serving.

Helpers are exposed as fixtures (``build``, ``db``, ``api``/``make_api``, ``vantage``, ``labnet``) so
test modules never import this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.probes.dns_probe import DnsOptions, ResolverSpec
from collector.app import CollectorConfig, create_app
from collector.labnet import LabDns, LabWeb, Site, Zone
from protocol import (
    Batch,
    Blocking,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    SignedBatch,
    SigningKey,
    Target,
    TcpResult,
    Verdict,
    make_registration,
    new_uid,
    sign_batch,
    utc_now,
)
from protocol import failures as F
from protocol.bogons import parse_prefixes

REPO_ROOT = Path(__file__).resolve().parents[2]
MSGPACK = "application/msgpack"

# --- building signed batches ----------------------------------------------------------------------


class Builder:
    """Builds valid measurements, batches and signed envelopes with the protocol package."""

    def network(
        self,
        *,
        country: str = "XA",
        region: str = "XA-1",
        asn: int = 64500,
        carrier: str = "Test",
        network_type: str = "mobile",
    ) -> NetworkContext:
        return NetworkContext(country, region, asn, carrier, network_type)

    def measurement(
        self,
        key: SigningKey,
        *,
        host: str = "news.example.test",
        scope: str = "domestic",
        verdict: str = "ok",
        category: str = "NEWS",
        measured_at: datetime | None = None,
        uid: str | None = None,
        network: NetworkContext | None = None,
        **network_fields: Any,
    ) -> Measurement:
        """One web_connectivity measurement whose step results match ``verdict``.

        Addresses are documentation addresses (192.0.2.0/24) and hosts end in ``.test``, so a
        stored ``127.0.0.1`` can only have come from the collector itself.
        """
        url = f"http://{host}/"
        dns = DnsResult("192.0.2.53:53", ("192.0.2.10",), None, 0.01)
        tcp: tuple[TcpResult, ...] = (TcpResult("192.0.2.10", 80, None, 0.02),)
        http: HttpResult | None = HttpResult(
            url, 200, 5, hashlib.sha256(b"hello").hexdigest(), host, None, 0.03
        )
        blocking: Blocking | None = None
        failure: str | None = None
        if verdict == "anomaly":
            dns = DnsResult("192.0.2.53:53", (), F.DNS_NXDOMAIN, 0.01)
            tcp, http = (), None
            blocking, failure = Blocking.DNS, F.DNS_NXDOMAIN
        elif verdict == "confirmed":
            assert http is not None
            http = HttpResult(
                url, 200, 9, hashlib.sha256(b"blockpage").hexdigest(), "Blocked", None, 0.03
            )
            blocking = Blocking.HTTP_DIFF
        elif verdict == "failure":
            failure = F.unknown_failure("no DNS resolver is configured on this system")
            dns = DnsResult("system", (), failure, 0.0)
            tcp, http = (), None
        return Measurement(
            uid=uid or new_uid(),
            agent_id=key.agent_id,
            measured_at=measured_at or utc_now() - timedelta(minutes=1),
            runtime=0.1,
            network=network or self.network(**network_fields),
            target=Target(url, scope, category),
            verdict=Verdict(verdict),
            blocking=blocking,
            failure=failure,
            dns=dns,
            tcp=tcp,
            http=http,
        )

    def batch(
        self, key: SigningKey, measurements: Iterable[Measurement], batch_id: str | None = None
    ) -> Batch:
        return Batch(batch_id or new_uid(), key.agent_id, utc_now(), tuple(measurements))

    def signed(
        self, key: SigningKey, measurements: Iterable[Measurement], batch_id: str | None = None
    ) -> SignedBatch:
        return sign_batch(key, self.batch(key, measurements, batch_id))

    def body(
        self, key: SigningKey, measurements: Iterable[Measurement], batch_id: str | None = None
    ) -> bytes:
        return self.signed(key, measurements, batch_id).to_bytes()


@pytest.fixture
def build() -> Builder:
    return Builder()


# --- looking into the collector's SQLite file -----------------------------------------------------


class Db:
    """Reads the collector's database file directly with sqlite3 (a second, independent reader)."""

    TABLES = ("agents", "batches", "measurements")

    def __init__(self, path: Path) -> None:
        self.path = path

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            return list(conn.execute(sql, args))

    def counts(self) -> dict[str, int]:
        return {table: self.query(f"SELECT COUNT(*) FROM {table}")[0][0] for table in self.TABLES}

    def all_values(self) -> Iterable[tuple[str, str, Any]]:
        """Every (table, column, value) in the database, for privacy scans."""
        tables = [row[0] for row in self.query("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [row[1] for row in self.query(f"PRAGMA table_info({table})")]
            for row in self.query(f"SELECT * FROM {table}"):
                for column, value in zip(columns, row, strict=True):
                    yield table, column, value


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "c.db"


@pytest.fixture
def db(db_path: Path) -> Db:
    return Db(db_path)


# --- the collector API over real HTTP -------------------------------------------------------------


class Api:
    """Thin wrapper over aiohttp's test client (a real server on 127.0.0.1) for the collector API."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def register(self, key: SigningKey, at: datetime | None = None) -> tuple[int, Any]:
        body = make_registration(key, at or utc_now())
        response = await self.client.post("/api/v1/agents", json=body)
        return response.status, await response.json()

    async def upload(self, body: bytes, content_type: str = MSGPACK) -> tuple[int, Any]:
        response = await self.client.post(
            "/api/v1/batches", data=body, headers={"Content-Type": content_type}
        )
        return response.status, await response.json()

    async def aggregate(self, **params: str) -> tuple[int, Any]:
        response = await self.client.get("/api/v1/aggregate", params=params)
        if response.content_type == "text/csv":
            return response.status, await response.text()
        return response.status, await response.json()


@pytest.fixture
def make_api(aiohttp_client: Any, db_path: Path) -> Any:
    async def make(**config: Any) -> Api:
        app = create_app(CollectorConfig(db_path=db_path, **config))
        return Api(await aiohttp_client(app))

    return make


@pytest.fixture
async def api(make_api: Any) -> Api:
    return await make_api()


@pytest.fixture
async def agent_key(api: Api) -> SigningKey:
    """A key that is registered with the ``api`` collector."""
    key = SigningKey.generate()
    status, _ = await api.register(key)
    assert status == 201
    return key


# --- a small simulated internet on loopback -------------------------------------------------------

DOMESTIC_OK = {"news.domestic.test": "Domestic News", "bank.domestic.test": "National Bank"}
INTERNATIONAL_OK = {"news.world.test": "World News"}
NXDOMAIN_HOST = "blocked.world.test"
REFUSED_HOST = "refused.world.test"
SERVFAIL_HOST = "servfail.world.test"
SINKHOLE_HOST = "sinkhole.world.test"
SINKHOLE_IP = "127.0.0.66"  # on loopback, nothing listens there: connections are refused
LAB_PREFIX = "127.0.0.0/8"


@dataclass
class LabNet:
    """``dns`` is the censoring resolver an agent is given; ``honest`` answers every site truly
    (the control helper's view from outside); ``web`` serves every site in ``sites``."""

    dns: LabDns
    honest: LabDns
    web: LabWeb
    sites: dict[str, Site]

    @property
    def resolver(self) -> ResolverSpec:
        return ResolverSpec("127.0.0.1", self.dns.port)

    @property
    def options(self) -> DnsOptions:
        """Loopback is this lab's internet: its answers are routable here, not bogons."""
        return DnsOptions(routable=parse_prefixes([LAB_PREFIX]))

    def url(self, host: str) -> str:
        return f"http://{host}:{self.web.port}/"

    def page(self, host: str) -> bytes:
        """The exact bytes LabWeb serves for ``host``."""
        site = self.sites[host]
        return (
            f"<!doctype html><title>{site.title}</title><h1>{site.title}</h1><p>{site.body}</p>"
        ).encode()


@pytest.fixture
async def labnet() -> AsyncIterator[LabNet]:
    titles = {**DOMESTIC_OK, **INTERNATIONAL_OK, NXDOMAIN_HOST: "Blocked News"}
    sites = {host: Site(title) for host, title in titles.items()}
    records = {host: ["127.0.0.1"] for host in sites}
    censor = Zone(
        records=dict(records),
        overrides={
            NXDOMAIN_HOST: "NXDOMAIN",
            REFUSED_HOST: "REFUSED",
            SERVFAIL_HOST: "SERVFAIL",
            SINKHOLE_HOST: [SINKHOLE_IP],
        },
    )
    web = await LabWeb(sites).start()
    dns = await LabDns(censor).start()
    honest = await LabDns(Zone(records=dict(records))).start()
    try:
        yield LabNet(dns, honest, web, sites)
    finally:
        await honest.stop()
        await dns.stop()
        await web.stop()


# --- the real CLI in a subprocess -----------------------------------------------------------------


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:  # shown by pytest when an assertion on the result fails
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Vantage:
    """Runs ``python -m vantagepoint ...`` without blocking the event loop."""

    def __init__(self, home: Path) -> None:
        self.cwd = home
        env = dict(os.environ)
        env.pop("VANTAGE_CONFIG", None)
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / "xdg-config"),
            XDG_DATA_HOME=str(home / "xdg-data"),
            XDG_STATE_HOME=str(home / "xdg-state"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        self.env = env

    def run_sync(self, *args: str, timeout: float = 30.0) -> CliResult:
        """For fixtures outside an event loop (nothing must be served while this runs)."""
        done = subprocess.run(
            [sys.executable, "-m", "vantagepoint", *args],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    async def spawn(self, *args: str, **kwargs: Any) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vantagepoint", *args, cwd=self.cwd, env=self.env, **kwargs
        )

    async def __call__(self, *args: str, timeout: float = 30.0) -> CliResult:
        process = await self.spawn(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return CliResult(process.returncode, out.decode(), err.decode())


@pytest.fixture(scope="session")
def vantage_in() -> Any:
    """``vantage_in(home)``: a CLI runner for fixtures wider than one test."""
    return Vantage


@pytest.fixture
def vantage(tmp_path: Path) -> Vantage:
    home = tmp_path / "home"
    home.mkdir()
    return Vantage(home)
