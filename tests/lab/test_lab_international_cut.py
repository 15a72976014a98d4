"""The event Vantage exists for: the mobile carriers of four provinces lose everything abroad.

The censor drops every packet to 198.19.0.0/16 from the mobile networks of XA-NORTH, XA-EAST,
XA-SOUTH and XA-WEST; XA-NORTH's fixed line and XA-CENTRAL's mobile network keep working, and
domestic sites keep working everywhere. Then the path to the collector is cut too for the affected
networks: agents spool (exit 3) and, once the path is back, ``agent upload`` delivers measurements
that keep the time they were made at.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import labreport
from labagent import LabAgent, init_agents, run_agents, write_targets
from labscenario import DropAbroad, Expect, RejectTo, applied, target_rows
from labtopo import COLLECTOR_IP, Lab
from needs import require

AFFECTED = ("north-mobile", "east-mobile", "south-mobile", "west-mobile")
UNAFFECTED = ("north-fixed", "central-mobile")
DOMESTIC = ("https://news.domestic.test/", "https://gov.domestic.test/")
ABROAD = ("https://maps.world.test/", "https://mail.world.test/")
TARGETS = [Expect(url, "ok") for url in DOMESTIC + ABROAD]
CUT = (DropAbroad(),)
CUT_AND_UPLOAD = (DropAbroad(), RejectTo(COLLECTOR_IP))


def _targets(lab: Lab) -> str:
    return str(write_targets(lab.workdir / "cut-targets.csv", target_rows(TARGETS)))


def _outcomes(run: Any) -> dict[str, str]:
    return {
        url: labreport.outcome(m["verdict"], m["blocking"], m["failure"])
        for url, m in run.by_url().items()
    }


def _expected(agent: LabAgent, cut: bool) -> dict[str, str]:
    """Dropped packets abroad time out at TCP for the cut networks; everything else is reached.

    The same holds when the collector is cut off too: without a control the agent still names the
    step that failed (a candidate ``tcp_ip``), and the domestic sites still look fine."""
    hit = cut and agent.client.key in AFFECTED
    dropped = labreport.outcome("anomaly", "tcp_ip", "generic_timeout_error")
    return {url: dropped if hit and url in ABROAD else "ok/-/-" for url in DOMESTIC + ABROAD}


def _check(runs: Sequence[Any], cut: bool, phase: str, codes: dict[str, int]) -> None:
    problems = []
    summary: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for run in runs:
        wanted, seen = _expected(run.agent, cut), _outcomes(run)
        group = "4 cut mobile nets" if run.agent.client.key in AFFECTED else "2 other nets"
        for url in wanted:
            scope = "abroad" if url in ABROAD else "domestic"
            expected, observed = summary.setdefault((group, scope), (set(), set()))
            expected.add(wanted[url])
            observed.add(seen.get(url, "?"))
        if seen != wanted:
            problems.append(f"{run.agent.name}: expected {wanted}, observed {seen}")
        want_code = codes.get(run.agent.client.key, 0)
        if run.code != want_code:
            problems.append(
                f"{run.agent.name}: exit {run.code}, expected {want_code}: {run.stderr}"
            )
    for (group, scope), (expected, observed) in summary.items():
        labreport.record(
            phase, f"{group}, {scope}", "|".join(sorted(expected)), "|".join(sorted(observed))
        )
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def cut_agents(lab: Lab) -> list[LabAgent]:
    return [agent for client in lab.clients for agent in init_agents(lab, client, "cut")]


def test_international_cut_hits_exactly_the_mobile_networks_of_four_provinces(
    lab: Lab, cut_agents: list[LabAgent]
) -> None:
    targets = _targets(lab)
    _check(run_agents(cut_agents, "once", "--targets", targets), False, "before cut", {})
    since = datetime.now(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )  # to the microsecond: rounds are close
    with applied(lab, CUT, [lab.client(key) for key in AFFECTED]):
        runs = run_agents(cut_agents, "once", "--targets", targets)
    _check(runs, True, "cut", {})
    # The collector sees it by region × carrier × network type × scope.
    answer = lab.api_get(f"/api/v1/aggregate?by=region,carrier,network_type,scope&since={since}")
    reachable: dict[tuple[str, int, str], float] = {}
    for row in answer["rows"]:
        reachable[(row["region"], row["asn"], row["scope"])] = row["ok"] / row["measurements"]
    for client in lab.clients:
        hit = client.key in AFFECTED
        assert reachable[(client.region, client.asn, "domestic")] == 1.0
        assert reachable[(client.region, client.asn, "international")] == (0.0 if hit else 1.0)


def test_measurements_spooled_during_the_cut_arrive_with_their_original_times(
    lab: Lab, cut_agents: list[LabAgent]
) -> None:
    targets = _targets(lab)
    affected = [a for a in cut_agents if a.client.key in AFFECTED]
    with applied(lab, CUT_AND_UPLOAD, [lab.client(key) for key in AFFECTED]):
        runs = run_agents(cut_agents, "once", "--targets", targets)
        # Spooled, not lost: exit 3 for the cut networks; the others uploaded as usual.
        assert {r.agent.name: r.code for r in runs} == {
            a.name: 3 if a in affected else 0 for a in cut_agents
        }, [r.stderr for r in runs]
        retry = run_agents(affected, "upload")
        assert [r.code for r in retry] == [3] * len(affected)
    restored = datetime.now(UTC)
    spooled = {
        m["uid"]: m["measured_at"]
        for run in runs
        if run.agent in affected
        for m in run.document["measurements"]
    }
    _check(runs, True, "cut+upload", {a.client.key: 3 for a in affected})
    assert not lab.stored(list(spooled), "measured_at"), "data went through a cut path"

    delivered = run_agents(affected, "upload")
    assert [r.code for r in delivered] == [0] * len(affected), [r.stderr for r in delivered]
    rows = lab.stored(list(spooled), "measured_at, received_at")
    assert set(rows) == set(spooled)
    for uid, measured_at in spooled.items():
        assert rows[uid]["measured_at"] == measured_at  # the time it was measured, not uploaded
        received = datetime.fromisoformat(rows[uid]["received_at"].replace("Z", "+00:00"))
        assert datetime.fromisoformat(measured_at.replace("Z", "+00:00")) < restored <= received
    labreport.NOTES.append(
        f"backfill: {len(spooled)} measurements spooled during the cut arrived after it with their"
        " original measured_at"
    )


# -- the detector (issue 6's contract; runs once `vantage collector detect` exists) ----------------
AGENTS_PER_NETWORK = 3  # "one agent is not a province": enough distinct agents per pair
BASELINE_HOURS = (4, 3, 2, 1)  # history before the cut, measured with the agents' clocks set back
CUT_ROUNDS = 3


def _has_detector() -> bool:
    """The public contract is the CLI (`vantage collector detect`), not a module name: check that."""
    done = subprocess.run(
        [sys.executable, "-m", "vantagepoint", "collector", "detect", "--help"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return done.returncode == 0


def _libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def _open_cuts(lab: Lab) -> list[dict[str, Any]]:
    answer = lab.api_get("/api/v1/disruptions")
    return [
        d
        for d in answer["disruptions"]
        if d["pattern"] == "international_cut" and d.get("ended_at") is None
    ]


def test_detector_opens_an_international_cut_for_exactly_the_affected_pairs(
    lab_host: None, tmp_path: Path
) -> None:
    if not _has_detector():
        pytest.skip("`vantage collector detect` is not in this tree yet (the detector's issue)")
    libfaketime = _libfaketime()
    require(libfaketime is not None, "libfaketime absent (Debian package faketime)")
    # A lab of its own: a collector whose database holds only this test's history and cut.
    with Lab(tmp_path, run_id=f"{os.getpid()}d") as lab:
        _detect_cut(lab, str(libfaketime))


def _detect_cut(lab: Lab, libfaketime: str) -> None:
    agents = [a for c in lab.clients for a in init_agents(lab, c, "detector", AGENTS_PER_NETWORK)]
    targets = _targets(lab)
    for hours in BASELINE_HOURS:  # a quiet history: every network reaches everything
        clock = {
            "LD_PRELOAD": libfaketime,
            "FAKETIME": f"-{hours}h",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
        _check(run_agents(agents, "once", "--targets", targets, env=clock), False, "history", {})
    (oldest,) = lab.db_rows("SELECT MIN(measured_at) FROM measurements")
    age = datetime.now(UTC) - datetime.fromisoformat(oldest[0].replace("Z", "+00:00"))
    assert age.total_seconds() > (max(BASELINE_HOURS) - 0.5) * 3600, (
        "the agents' clocks were not set back"
    )
    assert not _open_cuts(lab), "a cut was flagged on a quiet history"

    cut_started = time.monotonic()
    cut_at = datetime.now(UTC)
    flagged_after: float | None = None
    with applied(lab, CUT, [lab.client(key) for key in AFFECTED]):
        for _ in range(CUT_ROUNDS):
            _check(run_agents(agents, "once", "--targets", targets), True, "cut (detector)", {})
            # The lab's history is BASELINE_HOURS long, shorter than the detector's default minimum
            # (12 h): let each network be judged against its own short history.
            detect = lab.vantage(
                "collector",
                "detect",
                "--db",
                str(lab.db_path),
                "--min-baseline",
                str(len(BASELINE_HOURS) - 1),
            )
            assert detect.returncode == 0, detect.stderr
            cuts = _open_cuts(lab)
            if cuts:
                flagged_after = time.monotonic() - cut_started
                break
    assert flagged_after is not None, f"no international_cut after {CUT_ROUNDS} rounds"
    pairs = {(d["region"], int(str(d["asn"]).removeprefix("AS"))) for d in cuts}
    wanted = {(c.region, c.asn) for c in lab.clients if c.key in AFFECTED}
    assert pairs == wanted
    for disruption in cuts:
        assert disruption["network_type"] == "mobile"
        started = datetime.fromisoformat(disruption["started_at"].replace("Z", "+00:00"))
        assert cut_at.replace(minute=0, second=0, microsecond=0) <= started <= datetime.now(UTC)
    labreport.NOTES.append(
        f"detector: international_cut opened for {sorted(pairs)} {flagged_after:.1f} s after the"
        " cut began (rounds of all agents back to back, one `collector detect` pass per round)"
    )
