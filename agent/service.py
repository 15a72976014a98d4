"""``vantage agent run``: the long-running service a volunteer installs once and forgets.

One loop, three timers, all randomized so that agents do not fire in lockstep:

* a **measurement round** every ``interval`` seconds (x uniform(1 - jitter, 1 + jitter)): re-read the
  test list, ask the resource guard, determine the network context, measure, spool each result;
* a **connectivity pulse** every ``pulse_interval`` seconds (``pulse.py``);
* an **upload** after each round and every ``upload_interval`` seconds; when no collector answers,
  the next attempt backs off exponentially (with jitter) up to ``upload_interval``.

SIGTERM / SIGINT set a stop event: in-flight work is abandoned at its next await. Nothing is ever
half-written, because every result reaches the spool by an atomic rename the moment it is complete,
and an upload deletes a batch only after the collector's acknowledgement.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from protocol import Measurement, SigningKey, Target, format_time, utc_now

from .collector_client import CollectorClient
from .config import AgentConfig
from .errors import UploadError
from .guard import ResourceGuard, estimate_bytes
from .netcontext import ContextResolver
from .pulse import choose_anchors, measure_pulse
from .socks5 import make_session
from .spool import Spool, read_json, write_json
from .targets import load_targets
from .uploader import Uploader, UploadReport, backoff_delay
from .web_connectivity import measure_targets

T = TypeVar("T")


class TargetSource(Protocol):
    """Where the test list comes from. Signed, collector-served lists will implement this too."""

    def load(self) -> list[Target]: ...


@dataclass(frozen=True, slots=True)
class FileTargets:
    """A CSV test list on disk, re-read every round so edits take effect without a restart."""

    path: Path

    def load(self) -> list[Target]:
        return load_targets(self.path)


def status_path(spool_dir: Path) -> Path:
    return spool_dir / "status.json"


def make_context_resolver(config: AgentConfig, key: SigningKey) -> ContextResolver:
    async def fetch_token() -> bytes:
        problems = []
        async with make_session(config.proxy) as session:
            for url in config.collectors:
                try:
                    return await CollectorClient(url, session).whoami(key.agent_id)
                except UploadError as exc:
                    problems.append(str(exc))
        raise UploadError("; ".join(problems))

    return ContextResolver(
        config.network,
        detect_type=config.detect_network_type,
        fetch_token=fetch_token if config.service.context.whoami else None,
        mmdb_paths=config.service.context.mmdb_files,
        routable=config.service.context.routable_prefixes,
        state_path=config.spool_dir / "context.json",
    )


class AgentService:
    def __init__(
        self,
        config: AgentConfig,
        key: SigningKey,
        targets: TargetSource,
        *,
        spool: Spool | None = None,
        guard: ResourceGuard | None = None,
        context: ContextResolver | None = None,
        rng: random.Random | None = None,
        on_measurement: Callable[[Measurement], None] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.config, self.key, self.targets = config, key, targets
        self.settings = config.service
        self.spool = spool or Spool(config.spool_dir, self.settings.spool)
        self.guard = guard or ResourceGuard(self.settings.guard, config.spool_dir / "usage.json")
        self.context = context or make_context_resolver(config, key)
        self.uploader = Uploader(
            self.spool,
            key,
            config.collectors,
            proxy=config.proxy,
            collector_key=config.collector_key,
        )
        self.rng = rng or random.Random()
        self.on_measurement = on_measurement
        self.say = say or (lambda text: None)
        self.stop = asyncio.Event()
        self.status: dict[str, Any] = read_json(status_path(config.spool_dir))
        self._last_targets: list[Target] = []

    # --- bookkeeping --------------------------------------------------------------------------------

    def _jittered(self, seconds: float) -> float:
        jitter = self.settings.schedule.jitter
        return seconds * self.rng.uniform(1 - jitter, 1 + jitter)

    def _save_status(self, **changes: Any) -> None:
        self.status.update(changes)
        write_json(status_path(self.config.spool_dir), self.status)

    def _record(self, measurement: Measurement) -> None:
        self.spool.add(measurement)  # on disk before anything else happens
        if self.on_measurement is not None:
            self.on_measurement(measurement)

    async def _unless_stopped(self, work: Awaitable[T]) -> T | None:
        """Run ``work`` until it ends or a stop is requested (then cancel it: abandon, cleanly)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None

    # --- the three jobs -----------------------------------------------------------------------------

    async def measure_round(self) -> int:
        try:
            targets = self.targets.load()
        except Exception as exc:  # a bad list must not stop the service: report, try next round
            self.say(f"cannot load targets: {exc}")
            self._save_status(last_round_at=format_time(utc_now()), last_round="no targets")
            return 0
        self._last_targets = targets
        decision = self.guard.check(len(targets))
        if decision.allowed == 0:
            self.say(f"round skipped: {decision.reason}")
            self._save_status(
                last_round_at=format_time(utc_now()), last_round=f"skipped ({decision.reason})"
            )
            return 0
        chosen = self.guard.choose(targets, decision)
        network = await self.context.current()
        self._save_status(context=network_summary(network))
        moved = 0

        def on_result(m: Measurement) -> None:
            nonlocal moved
            self._record(m)
            moved += estimate_bytes(m)

        done = await self._unless_stopped(
            measure_targets(chosen, self.key.agent_id, network, self.config.probe, on_result)
        )
        count = len(done) if done is not None else 0
        self.guard.record(moved, count)
        self.spool.enforce_limits()
        self._save_status(
            last_round_at=format_time(utc_now()),
            last_round=f"{count} measured"
            + (f" ({decision.reason})" if decision.reason != "ok" else ""),
        )
        self.say(f"round done: {count} of {len(targets)} targets ({decision.reason})")
        return count

    async def pulse(self) -> int:
        anchors = choose_anchors(self.settings.pulse_anchors, self._last_targets, self.rng)
        if not anchors or self.guard.check(len(anchors)).allowed < len(anchors):
            return 0
        network = await self.context.current()
        results = await self._unless_stopped(
            measure_targets(
                anchors, self.key.agent_id, network, self.config.probe, measure=measure_pulse
            )
        )
        for m in results or ():
            self._record(m)
        self.guard.record(sum(estimate_bytes(m) for m in results or ()), len(results or ()))
        return len(results or ())

    async def upload(self) -> UploadReport | None:
        report = await self._unless_stopped(self.uploader.drain(self.settings.schedule.batch_size))
        if report is None:
            return None
        self.guard.record(report.bytes_sent)
        changes: dict[str, Any] = {"last_upload_attempt": format_time(utc_now())}
        if report.batches:
            changes.update(last_upload_at=format_time(utc_now()), last_upload_to=report.collector)
        changes["last_upload_error"] = report.errors[-1] if report.errors else None
        self._save_status(**changes)
        if report.batches or report.errors:
            self.say(
                f"upload: {report.batches} batch(es) sent, {report.left} left"
                + (f"; {report.errors[-1]}" if report.errors else "")
            )
        return report

    # --- the loop -----------------------------------------------------------------------------------

    async def run(self, max_rounds: int | None = None) -> int:
        """Run until stopped (or ``max_rounds`` rounds and a last upload); return the exit code."""
        schedule = self.settings.schedule
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_round = now + self.rng.uniform(0, min(schedule.interval, 60.0) * schedule.jitter)
        next_pulse = (
            now + self._jittered(schedule.pulse_interval) if schedule.pulse_interval else None
        )
        next_upload = now
        failures = 0
        rounds = 0
        self._save_status(started_at=format_time(utc_now()), stopped_at=None)
        while not self.stop.is_set():
            due = min(t for t in (next_round, next_pulse, next_upload) if t is not None)
            self._save_status(next_run_at=_wall(next_round - loop.time()))
            try:
                await asyncio.wait_for(self.stop.wait(), max(0.0, due - loop.time()))
                break
            except TimeoutError:
                pass
            now = loop.time()
            if now >= next_round:
                await self.measure_round()
                rounds += 1
                next_round = loop.time() + self._jittered(schedule.interval)
                next_upload = loop.time()
                if max_rounds is not None and rounds >= max_rounds:
                    break
            if next_pulse is not None and loop.time() >= next_pulse and not self.stop.is_set():
                await self.pulse()
                next_pulse = loop.time() + self._jittered(schedule.pulse_interval)
            if loop.time() >= next_upload and not self.stop.is_set():
                report = await self.upload()
                if report is not None and report.left and report.errors:
                    failures += 1
                    wait = backoff_delay(failures, 5.0, schedule.upload_interval, self.rng)
                else:
                    failures = 0
                    wait = self._jittered(schedule.upload_interval)
                next_upload = loop.time() + wait
        left = 0
        if max_rounds is not None and not self.stop.is_set():
            report = await self.upload()  # the last round's results, before exiting
            left = report.left if report is not None else 0
        self._save_status(stopped_at=format_time(utc_now()), next_run_at=None)
        return 3 if left else 0


def _wall(seconds_from_now: float) -> str:
    return format_time(utc_now() + timedelta(seconds=max(0.0, seconds_from_now)))


def network_summary(network: Any) -> dict[str, Any]:
    wire = network.to_wire()
    wire.pop("token", None)
    return dict(wire)


def install_signal_handlers(service: AgentService) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop.set)


async def run_service(service: AgentService, max_rounds: int | None) -> int:
    install_signal_handlers(service)
    service.guard.lower_priority()
    return await service.run(max_rounds)


def oldest_age(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    return str(now - value).split(".")[0] + " ago"


__all__: Sequence[str] = ["AgentService", "FileTargets", "TargetSource", "run_service"]
