"""Uploads through outages, mirrors and a SOCKS5 proxy: every measurement arrives exactly once."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from service_helpers import (
    batch_measurement_total,
    free_port,
    make_agent,
    quick,
    start_lab,
    stored_measurements,
    with_context,
)

from agent.service import AgentService, FileTargets
from agent.spool import Spool
from agent.uploader import Uploader, drain
from collector.app import CollectorConfig
from collector.server import start_collector
from protocol import Measurement, SignedBatch, format_time


async def test_outage_then_recovery_delivers_everything_once_with_original_times(
    tmp_path: Path,
) -> None:
    lab = await start_lab()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        targets = lab.targets_csv(tmp_path / "targets.csv")
        config, key = make_agent(tmp_path / "agent", url, lab.resolver)
        config = quick(with_context(config, whoami=False))
        made: list[Measurement] = []
        service = AgentService(config, key, FileTargets(targets), on_measurement=made.append)
        service.uploader.attempts = 1
        # Collector down: the agent keeps measuring; nothing leaves the spool.
        assert await service.run(max_rounds=3) == 3
        assert len(made) >= 12
        assert Spool(config.spool_dir).unsent_measurements() == len(made)
        await asyncio.sleep(0.05)  # time passes: upload time must not replace measurement time
        collector = await start_collector(
            CollectorConfig(db_path=tmp_path / "collector.db"), port=port
        )
        try:
            report = await drain(Spool(config.spool_dir), key, url)
            again = await drain(Spool(config.spool_dir), key, url)  # nothing left to resend
        finally:
            await collector.stop()
        assert report.left == 0 and not report.errors and again.batches == 0
        stored = stored_measurements(tmp_path / "collector.db")
        assert stored == {m.uid: format_time(m.measured_at) for m in made}
        assert batch_measurement_total(tmp_path / "collector.db") == len(made)
    finally:
        await lab.stop()


async def test_first_collector_dead_uploads_go_to_the_next(tmp_path: Path) -> None:
    collector = await start_collector(CollectorConfig(db_path=tmp_path / "collector.db"))
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        config, key = make_agent(tmp_path / "agent", dead, "127.0.0.1:9", mirrors=(collector.url,))
        assert config.collectors == (dead, collector.url)
        spool = Spool(config.spool_dir)
        from test_spool_durability import measurement

        for _ in range(3):
            spool.add(measurement(key))
        uploader = Uploader(spool, key, config.collectors, attempts=1)
        report = await uploader.drain(batch_size=2)
        assert report.batches == 2 and report.stored == 3 and report.left == 0
        assert report.collector == collector.url
        assert uploader.urls[0] == collector.url, "the mirror that worked is tried first next time"
    finally:
        await collector.stop()


async def test_refused_batch_is_set_aside_and_the_rest_still_go(tmp_path: Path) -> None:
    collector = await start_collector(CollectorConfig(db_path=tmp_path / "collector.db"))
    try:
        from test_spool_durability import measurement

        config, key = make_agent(tmp_path / "agent", collector.url, "127.0.0.1:9")
        spool = Spool(config.spool_dir)
        spool.add(measurement(key))
        spool.pack(key)
        # A batch with a broken signature sorts first and is refused (401): kept aside, not retried.
        (good,) = spool.outbox_items()
        forged = bytes([good.signed.signature[0] ^ 1]) + good.signed.signature[1:]
        bad = SignedBatch(good.signed.agent_id, good.signed.payload, forged)
        (spool.outbox / ("0" * 32 + ".b")).write_bytes(bad.to_bytes())
        report = await drain(spool, key, collector.url, attempts=1)
        assert report.rejected == 1 and report.batches == 1 and report.left == 0
        assert spool.counts()["rejected"] == 1
    finally:
        await collector.stop()


class Socks5Server:
    """A real SOCKS5 server (RFC 1928/1929) on 127.0.0.1 that resolves names from its own table."""

    def __init__(self, names: dict[str, str], auth: tuple[str, str] | None = None) -> None:
        self.names, self.auth = names, auth
        self.requests: list[tuple[str, int]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Socks5Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            version, count = await reader.readexactly(2)
            methods = await reader.readexactly(count)
            wanted = 2 if self.auth else 0
            if version != 5 or wanted not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(bytes([5, wanted]))
            if self.auth:
                _, ulen = await reader.readexactly(2)
                user = (await reader.readexactly(ulen)).decode()
                (plen,) = await reader.readexactly(1)
                password = (await reader.readexactly(plen)).decode()
                ok = (user, password) == self.auth
                writer.write(b"\x01\x00" if ok else b"\x01\x01")
                if not ok:
                    return
            _, command, _, atyp = await reader.readexactly(4)
            if command != 1:  # only CONNECT
                writer.write(b"\x05\x07\x00\x01" + bytes(6))
                return
            if atyp == 3:
                (length,) = await reader.readexactly(1)
                host = (await reader.readexactly(length)).decode()
            else:
                raw = await reader.readexactly(4 if atyp == 1 else 16)
                host = ".".join(map(str, raw)) if atyp == 1 else raw.hex()
            (port,) = struct.unpack(">H", await reader.readexactly(2))
            self.requests.append((host, port))
            address = self.names.get(host, host)
            try:
                up_reader, up_writer = await asyncio.open_connection(address, port)
            except OSError:
                writer.write(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
                return
            writer.write(b"\x05\x00\x00\x01" + bytes(6))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def test_uploads_through_a_socks5_proxy_that_resolves_the_name(tmp_path: Path) -> None:
    collector = await start_collector(CollectorConfig(db_path=tmp_path / "collector.db"))
    port = int(collector.url.rsplit(":", 1)[1])
    # Only the proxy knows this name: the upload can succeed only if the proxy resolved it.
    proxy = await Socks5Server({"collector.test": "127.0.0.1"}, auth=("tor", "isolate-1")).start()
    try:
        from test_spool_durability import measurement

        url = f"http://collector.test:{port}"
        config, key = make_agent(
            tmp_path / "agent",
            url,
            "127.0.0.1:9",
            proxy=f"socks5://tor:isolate-1@127.0.0.1:{proxy.port}",
        )
        spool = Spool(config.spool_dir)
        spool.add(measurement(key))
        report = await drain(spool, key, config.collectors, proxy=config.proxy, attempts=1)
        assert report.batches == 1 and report.stored == 1, report.errors
        assert ("collector.test", port) in proxy.requests
        assert len(stored_measurements(tmp_path / "collector.db")) == 1
        # Wrong password: refused by the proxy, the batch stays in the spool.
        spool.add(measurement(key))
        refused = await drain(
            spool, key, url, proxy=f"socks5://tor:wrong@127.0.0.1:{proxy.port}", attempts=1
        )
        assert refused.batches == 0 and refused.left == 1
        assert "proxy" in " ".join(refused.errors)
    finally:
        await proxy.stop()
        await collector.stop()
