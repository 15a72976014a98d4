"""The collector under test: a real ``vantage collector serve`` subprocess on 127.0.0.1.

It is started on a free port, then restarted on the same port after a kill -9 or an outage, as a
service manager would, so the agents' configured URL stays valid. Its own detector is off
(``--detect-interval 0``): detection passes run at *simulated* times (``disruptions.detect(at=...)``,
what ``vantage collector detect --at`` does), because the collector's clock is the real one. Rate
limits are off: the whole fleet comes from one loopback address and replays hours in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

STARTUP_TIMEOUT = 60.0


class CollectorFailed(RuntimeError):
    pass


@dataclass
class CollectorProcess:
    db: str
    workdir: Path
    extra: tuple[str, ...] = ()
    port: int = 0
    url: str = ""
    starts: int = 0
    process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vantagepoint", "collector", "serve",
            "--db", self.db, "--host", "127.0.0.1", "--port", str(self.port), "--migrate",
            "--key", str(self.workdir / "collector.key"),
            "--rate-per-agent", "0", "--rate-per-address", "0",
            "--detect-interval", "0", "--log-format", "json", *self.extra,
        ]  # fmt: skip

    async def start(self) -> str:
        last = ""
        for _ in range(20):  # the old socket may linger for a moment after a kill -9
            log = (self.workdir / "collector.log").open("ab")
            self.process = await asyncio.create_subprocess_exec(
                *self.command(), stdout=asyncio.subprocess.PIPE, stderr=log
            )
            log.close()
            assert self.process.stdout is not None
            line = b""
            with contextlib.suppress(TimeoutError):
                line = await asyncio.wait_for(self.process.stdout.readline(), STARTUP_TIMEOUT)
            match = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line.decode())
            if match:
                self.url, self.port = match.group(1), int(match.group(2))
                self.starts += 1
                return self.url
            last = line.decode()
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
            await asyncio.sleep(0.25)
        tail = (self.workdir / "collector.log").read_text(errors="replace")[-2000:]
        raise CollectorFailed(f"collector did not start: {last!r}\n{tail}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.returncode is None else None

    async def kill9(self) -> None:
        """SIGKILL: no chance to finish requests, flush or close anything."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                await self.kill9()

    async def restart(self) -> str:
        await self.stop()
        return await self.start()

    def rss_mb(self) -> float | None:
        pid = self.pid
        if pid is None:
            return None
        try:
            return float(psutil.Process(pid).memory_info().rss) / 2**20
        except psutil.Error:
            return None


@dataclass
class RssSampler:
    """Samples the collector's resident memory every ``interval`` seconds while a run goes on."""

    collector: CollectorProcess
    interval: float = 0.5
    samples: list[tuple[float, float, str]] = field(default_factory=list)  # (seconds, MB, phase)
    phase: str = "start"
    _task: asyncio.Task[None] | None = None
    _t0: float = field(default_factory=time.monotonic)

    def sample(self) -> float | None:
        rss = self.collector.rss_mb()
        if rss is not None:
            self.samples.append((round(time.monotonic() - self._t0, 2), round(rss, 1), self.phase))
        return rss

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def peak(self, phase: str | None = None) -> float | None:
        values = [mb for _, mb, p in self.samples if phase is None or p == phase]
        return max(values) if values else None

    def summary(self) -> dict[str, object]:
        phases: dict[str, list[float]] = {}
        for _, mb, p in self.samples:
            phases.setdefault(p, []).append(mb)
        return {
            "peak_mb": self.peak(),
            "first_mb": self.samples[0][1] if self.samples else None,
            "last_mb": self.samples[-1][1] if self.samples else None,
            "by_phase": {
                p: {"min_mb": min(v), "max_mb": max(v), "samples": len(v)}
                for p, v in phases.items()
            },
        }
