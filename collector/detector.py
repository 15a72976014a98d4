"""The disruption detector's arithmetic: hourly series in, named episodes out (no I/O, no clock).

For each network (country, region, carrier ASN, network type) and scope, the success ratio of a bucket
(``ok / measurements``) is compared with a baseline, the median of a sliding window of earlier buckets,
as IODA does for active probing: below ``warning`` (80 %) of the baseline is an anomaly, below
``critical`` (50 %) a critical one. While a bucket is anomalous its baseline, not its value, enters the
history ("inpainting"), so an outage never becomes its own baseline. A series is judged only once its
history holds ``min_baseline`` buckets; until then (a new deployment, the demo) the baseline is the median
of the same scope on the country's other networks in the same bucket, if there are at least two. A bucket
is judged only when ``min_agents`` distinct agents measured it: one volunteer is not a province, and a drop
must also exceed ``noise_sigmas`` binomial standard deviations (counted over agents, since failures
cluster by agent), so a handful of measurements cannot raise an alarm by chance; and an hour still filling
up can raise only a critical drop (a warning waits for the hour to complete).

Per bucket the two scopes are read together and named:

- ``international_cut``: international collapses, domestic holds (or was not measured);
- ``full_outage``: both collapse;
- ``silence``: fewer than ``silence`` (half) of the usual agents report, in a completed bucket. Unconfirmed:
  agents that were cut off upload their backlog later, and the re-run turns the silent buckets into
  ``full_outage`` (failures came back) or clears them (the agents were merely offline).

Consecutive anomalous buckets form one episode (buckets with too little data to judge neither extend nor
end it); the first bucket judged normal afterwards ends it. ``targeted_blocking`` is found per domain from
tampering evidence (the ``blocking`` column: DNS or HTTP interference) in ``blocking_episodes``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from math import sqrt
from statistics import median
from typing import Final, TypeVar

#: (country, region, asn, network_type)
Network = tuple[str, str, int, str]

INTERNATIONAL_CUT: Final = "international_cut"
FULL_OUTAGE: Final = "full_outage"
TARGETED_BLOCKING: Final = "targeted_blocking"
SILENCE: Final = "silence"
PATTERNS: Final = (INTERNATIONAL_CUT, FULL_OUTAGE, TARGETED_BLOCKING, SILENCE)
#: When buckets of one episode are named differently, the episode takes the strongest name.
_RANK: Final = {SILENCE: 0, INTERNATIONAL_CUT: 1, FULL_OUTAGE: 2}
SCOPES: Final = ("domestic", "international")
#: ``blocking`` values that mean interference on the path rather than an unreachable site.
TAMPERING: Final = frozenset({"dns", "http-diff", "http-failure"})


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    window: int = 168  # buckets in the sliding baseline window (7 days of hours)
    min_baseline: int = 12  # buckets of history before a series is judged on its own history
    min_agents: int = 3  # distinct agents a bucket needs before it can be flagged
    min_peers: int = 2  # other networks needed for a peer baseline (cold start)
    warning: float = 0.8
    critical: float = 0.5
    silence: float = 0.5  # share of the usual agents below which a completed bucket is silent
    blocking_share: float = 0.5  # share of a domain's measurements with tampering that is blocking
    horizon_hours: int = 48  # how far back late (backfilled) data may still reshape events
    noise_sigmas: float = 3.0  # a drop must also exceed this many binomial standard deviations


@dataclass(frozen=True, slots=True)
class Cell:
    """One network × scope × bucket: measurements, how many were ok, distinct agents."""

    n: int
    ok: int
    agents: int

    @property
    def ratio(self) -> float:
        return self.ok / self.n if self.n else 0.0


@dataclass(slots=True)
class Series:
    """Everything the detector reads about one network, per bucket (ISO hour strings)."""

    carrier: str = ""
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)  # bucket -> scope -> cell
    agents: dict[str, int] = field(default_factory=dict)  # bucket -> distinct agents, any scope


@dataclass(slots=True)
class Episode:
    network: Network
    carrier: str
    pattern: str
    scope: str  # "international", "domestic", or "all"
    started_at: str
    ended_at: str | None  # None: still going on at the last judged bucket
    severity: str
    baseline: float | None
    current: float | None
    agents: int
    baseline_source: str  # "history" | "peers" | "agents"
    domain: str = ""
    evidence: dict[str, int] = field(default_factory=dict)

    @property
    def confirmed(self) -> bool:
        return self.pattern != SILENCE


def hour_buckets(start: datetime, end: datetime) -> list[str]:
    """Every hour bucket from ``start`` up to and including ``end`` (both on the hour)."""
    out = []
    moment = start
    while moment <= end:
        out.append(moment.strftime("%Y-%m-%dT%H:00:00Z"))
        moment += timedelta(hours=1)
    return out


def bucket_end(bucket: str) -> str:
    moment = datetime.strptime(bucket, "%Y-%m-%dT%H:%M:%SZ") + timedelta(hours=1)
    return moment.strftime("%Y-%m-%dT%H:00:00Z")


@dataclass(slots=True)
class _Judged:
    """One bucket of one network after judgement: a pattern, "normal", or "unknown"."""

    state: str
    scope: str = "all"
    baseline: float | None = None
    current: float | None = None
    source: str = "history"
    agents: int = 0
    cells: Mapping[str, Cell] = field(default_factory=dict)


def _peer_baselines(
    series: Mapping[Network, Series], buckets: Sequence[str], settings: DetectorSettings
) -> dict[tuple[Network, str, str], float]:
    """Median ratio of the *other* networks of a country, per (network, bucket, scope)."""
    out: dict[tuple[Network, str, str], float] = {}
    for bucket in buckets:
        for scope in SCOPES:
            by_country: dict[str, list[tuple[Network, float]]] = {}
            for net, s in series.items():
                cell = s.cells.get(bucket, {}).get(scope)
                if cell is not None and cell.n > 0 and cell.agents >= 1:
                    by_country.setdefault(net[0], []).append((net, cell.ratio))
            for members in by_country.values():
                for net, _ in members:
                    others = [ratio for other, ratio in members if other != net]
                    if len(others) >= settings.min_peers:
                        out[(net, bucket, scope)] = median(others)
    return out


def _judge_network(
    net: Network,
    s: Series,
    buckets: Sequence[str],
    complete: Sequence[bool],
    peers: Mapping[tuple[Network, str, str], float],
    settings: DetectorSettings,
) -> list[tuple[str, _Judged]]:
    history = {scope: deque[float](maxlen=settings.window) for scope in SCOPES}
    agent_history = deque[int](maxlen=settings.window)
    judged: list[tuple[str, _Judged]] = []
    for bucket, is_complete in zip(buckets, complete, strict=True):
        cells = s.cells.get(bucket, {})
        low: dict[str, tuple[float, float, str]] = {}  # scope -> (baseline, current, source)
        normal: set[str] = set()
        bases: dict[str, float] = {}
        for scope in SCOPES:
            base: float | None = None
            source = "history"
            if len(history[scope]) >= settings.min_baseline:
                base = median(history[scope])
            elif (net, bucket, scope) in peers:
                base, source = peers[(net, bucket, scope)], "peers"
            if base is not None:
                bases[scope] = base
            cell = cells.get(scope)
            if base is None or base <= 0 or cell is None or cell.n == 0:
                continue
            if cell.agents < settings.min_agents:
                continue
            # Small buckets are noisy: 4 of 6 ok is 67 % by chance alone. Flag a drop only when it is
            # also beyond what sampling explains at the baseline's rate. Failures cluster by agent
            # (one volunteer's flaky Wi-Fi fails all its targets at once), so the sample size that
            # counts is the number of agents, not of measurements; and the rate is kept off 0 and 1,
            # or a baseline of exactly 100 % would make a single failure "significant". (The fleet
            # simulator found both: false cuts on half-filled evening hours.)
            rate = min(max(base, 0.02), 0.98)
            samples = max(1, min(cell.n, cell.agents))
            noise = settings.noise_sigmas * sqrt(rate * (1 - rate) / samples)
            # An hour still filling up has few, clustered samples: there only a critical drop
            # counts; a mere warning waits for the hour to complete.
            threshold = settings.warning if is_complete else settings.critical
            if cell.ratio < threshold * base and cell.ratio < base - noise:
                low[scope] = (base, cell.ratio, source)
            else:
                normal.add(scope)
        agents_now = s.agents.get(bucket, 0)
        usual_agents = (
            median(agent_history) if len(agent_history) >= settings.min_baseline else None
        )
        silent = (
            is_complete
            and usual_agents is not None
            and usual_agents >= settings.min_agents
            and agents_now < settings.silence * usual_agents
        )
        if "international" in low and "domestic" in low:
            (b1, _, src), (b2, _, _) = low["international"], low["domestic"]
            n = sum(c.n for c in cells.values())
            pooled = sum(c.ok for c in cells.values()) / n if n else 0.0
            verdict = _Judged(FULL_OUTAGE, "all", (b1 + b2) / 2, pooled, src)
        elif "international" in low:
            base, current, src = low["international"]
            verdict = _Judged(INTERNATIONAL_CUT, "international", base, current, src)
        elif silent:
            assert usual_agents is not None
            verdict = _Judged(SILENCE, "all", float(usual_agents), float(agents_now), "agents")
        elif normal:
            verdict = _Judged("normal")
        else:
            verdict = _Judged("unknown")
        verdict.agents, verdict.cells = agents_now, cells
        judged.append((bucket, verdict))
        # Inpainting: an anomalous bucket contributes its baseline, not its value, to the history.
        anomalous = verdict.state in _RANK
        for scope in SCOPES:
            cell = cells.get(scope)
            if anomalous and scope in bases and (scope in low or verdict.state == SILENCE):
                history[scope].append(bases[scope])
            elif cell is not None and cell.n > 0:
                history[scope].append(cell.ratio)
        if verdict.state == SILENCE and usual_agents is not None:
            agent_history.append(round(usual_agents))
        elif is_complete and (agents_now or agent_history):
            # Hours before a network's first report are not silence: its history starts there.
            agent_history.append(agents_now)
    return judged


def _severity(baseline: float | None, current: float | None, settings: DetectorSettings) -> str:
    if baseline is None or current is None or baseline <= 0:
        return "warning"
    return "critical" if current < settings.critical * baseline else "warning"


T = TypeVar("T")


def runs(
    judged: Iterable[tuple[str, T, bool | None]],
) -> list[tuple[list[tuple[str, T]], str | None]]:
    """Group ``(bucket, value, anomalous)`` into runs of anomalous buckets with the bucket that ended
    each (None: still going on). ``anomalous=None`` (too little data) neither extends nor ends a run."""
    out: list[tuple[list[tuple[str, T]], str | None]] = []
    run: list[tuple[str, T]] = []
    for bucket, value, anomalous in judged:
        if anomalous:
            run.append((bucket, value))
        elif anomalous is not None and run:
            out.append((run, bucket))
            run = []
    if run:
        out.append((run, None))
    return out


def _reachability_episode(
    net: Network,
    carrier: str,
    run: Sequence[tuple[str, _Judged]],
    ended_at: str | None,
    settings: DetectorSettings,
) -> Episode:
    pattern = max((j.state for _, j in run), key=lambda state: _RANK[state])
    named = [j for _, j in run if j.state == pattern]
    worst = min(named, key=lambda j: (j.current or 0.0) / j.baseline if j.baseline else 1.0)
    evidence = {"buckets": len(run), "measurements": 0, "ok": 0}
    for scope in SCOPES:
        evidence[f"{scope}_measurements"] = sum(
            j.cells[scope].n for _, j in run if scope in j.cells
        )
        evidence[f"{scope}_ok"] = sum(j.cells[scope].ok for _, j in run if scope in j.cells)
        evidence["measurements"] += evidence[f"{scope}_measurements"]
        evidence["ok"] += evidence[f"{scope}_ok"]
    evidence["failures"] = evidence["measurements"] - evidence["ok"]
    return Episode(
        network=net,
        carrier=carrier,
        pattern=pattern,
        scope=named[-1].scope,
        started_at=run[0][0],
        ended_at=ended_at,
        severity=_severity(worst.baseline, worst.current, settings),
        baseline=named[-1].baseline,
        current=named[-1].current,
        agents=max(j.agents for _, j in run),
        baseline_source=named[-1].source,
        evidence=evidence,
    )


def reachability_episodes(
    series: Mapping[Network, Series],
    buckets: Sequence[str],
    complete: Sequence[bool],
    settings: DetectorSettings,
) -> list[Episode]:
    """International cuts, full outages and silences of every network over ``buckets`` (oldest
    first; ``complete[i]`` says whether bucket i is over, which silence needs)."""
    peers = _peer_baselines(series, buckets, settings)
    out: list[Episode] = []
    for net in sorted(series):
        judged = _judge_network(net, series[net], buckets, complete, peers, settings)
        marked = [
            (bucket, j, True if j.state in _RANK else (False if j.state == "normal" else None))
            for bucket, j in judged
        ]
        for run, ended_at in runs(marked):
            out.append(_reachability_episode(net, series[net].carrier, run, ended_at, settings))
    return out


@dataclass(frozen=True, slots=True)
class DomainCell:
    """One network × domain × bucket, from the raw rows."""

    scope: str
    n: int
    ok: int
    tampered: int
    tampered_agents: int
    techniques: Mapping[str, int]


def split_targeted(
    series: Mapping[Network, Series],
    cells: Mapping[tuple[Network, str], Mapping[str, DomainCell]],
    settings: DetectorSettings,
) -> set[tuple[Network, str, str]]:
    """Find targeted blocking and take it out of the reachability series; return ``(network, domain,
    bucket)`` of every targeted cell.

    A domain is tampered with in a bucket when at least ``blocking_share`` of its measurements show DNS
    or HTTP interference. If that is true of more than half the domains measured in its scope, the
    scope as a whole is cut (an ``international_cut``, judged on the series); otherwise those domains
    are targeted, and their measurements are removed from the series so that blocking one site of a
    short list does not read as a cut of the whole scope."""
    tampered: dict[tuple[Network, str, str], list[str]] = {}
    measured: dict[tuple[Network, str, str], int] = {}
    for (net, domain), by_bucket in cells.items():
        for bucket, cell in by_bucket.items():
            measured[(net, bucket, cell.scope)] = measured.get((net, bucket, cell.scope), 0) + 1
            if cell.n and cell.tampered >= settings.blocking_share * cell.n:
                tampered.setdefault((net, bucket, cell.scope), []).append(domain)
    targeted: set[tuple[Network, str, str]] = set()
    for (net, bucket, scope), domains in tampered.items():
        if len(domains) * 2 > measured[(net, bucket, scope)]:
            continue
        for domain in domains:
            targeted.add((net, domain, bucket))
            cell = cells[(net, domain)][bucket]
            s = series.get(net)
            whole = s.cells.get(bucket, {}).get(scope) if s else None
            if s is not None and whole is not None:
                s.cells[bucket][scope] = Cell(
                    max(0, whole.n - cell.n), max(0, whole.ok - cell.ok), whole.agents
                )
    return targeted


def blocking_episodes(
    cells: Mapping[tuple[Network, str], Mapping[str, DomainCell]],
    carriers: Mapping[Network, str],
    buckets: Sequence[str],
    targeted: set[tuple[Network, str, str]],
    settings: DetectorSettings,
) -> list[Episode]:
    """Targeted blocking per (network, domain): runs of buckets ``split_targeted`` marked, each seen
    by at least ``min_agents`` agents. Tampering is direct evidence, so no history is needed."""
    out: list[Episode] = []
    for (net, domain), by_bucket in sorted(cells.items()):
        normal_ratios = [
            c.ok / c.n
            for c in by_bucket.values()
            if c.n and c.tampered < settings.blocking_share * c.n
        ]
        baseline = median(normal_ratios) if normal_ratios else None
        marked: list[tuple[str, DomainCell, bool | None]] = []
        for bucket in buckets:
            cell = by_bucket.get(bucket)
            if cell is None or cell.n == 0:
                continue
            if (net, domain, bucket) in targeted:
                enough = cell.tampered_agents >= settings.min_agents
                marked.append((bucket, cell, True if enough else None))
            elif cell.tampered < settings.blocking_share * cell.n:
                marked.append((bucket, cell, False))
        for run, ended_at in runs(marked):
            out.append(
                _blocking_episode(net, domain, carriers.get(net, ""), run, ended_at, baseline)
            )
    return out


def _blocking_episode(
    net: Network,
    domain: str,
    carrier: str,
    run: Sequence[tuple[str, DomainCell]],
    ended_at: str | None,
    baseline: float | None,
) -> Episode:
    last = run[-1][1]
    techniques: dict[str, int] = {}
    for _, c in run:
        for name, count in c.techniques.items():
            techniques[name] = techniques.get(name, 0) + count
    evidence = {
        "buckets": len(run),
        "measurements": sum(c.n for _, c in run),
        "ok": sum(c.ok for _, c in run),
        "tampered": sum(c.tampered for _, c in run),
        **{f"blocking_{name}": count for name, count in sorted(techniques.items())},
    }
    share = evidence["tampered"] / max(1, evidence["measurements"])
    return Episode(
        network=net,
        carrier=carrier,
        pattern=TARGETED_BLOCKING,
        scope=last.scope,
        started_at=run[0][0],
        ended_at=ended_at,
        severity="critical" if share >= 0.9 else "warning",
        baseline=baseline,
        current=last.ok / last.n if last.n else 0.0,
        agents=max(c.tampered_agents for _, c in run),
        baseline_source="history",
        domain=domain,
        evidence=evidence,
    )
