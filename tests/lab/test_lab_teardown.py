"""The lab cleans up after itself: no namespaces, links, rules or processes outlive a run.

A failed build, a failed test inside a lab, a failed test inside a scenario, and a run killed
outright (its leftovers are removed by the next session's sweep) are each checked here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import labhost
from labscenario import Blackhole, DnsLie, active_rules, applied
from labtopo import CLIENTS, ISP_RESOLVER, Lab, LabProcess, site


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _resolve(lab: Lab, host: str) -> str:
    code = (
        "import sys,dns.resolver;r=dns.resolver.Resolver(configure=False);"
        "r.nameservers=[sys.argv[2]];print(r.resolve(sys.argv[1],'A')[0].to_text())"
    )
    return labhost.in_ns(lab.client_ns(lab.clients[0]), sys.executable, "-c", code, host,
                         ISP_RESOLVER).strip()  # fmt: skip


def test_sweep_removes_what_a_killed_run_left_behind(lab_host: None) -> None:
    dead, alive = f"vlab-{_dead_pid()}-", "vlab-"
    keeper = subprocess.Popen(["sleep", "60"])  # stands for another lab run still in progress
    alive += f"{keeper.pid}-"
    try:
        for prefix in (dead, alive):
            labhost.sh("ip", "netns", "add", prefix + "a")
            labhost.sh("ip", "netns", "add", prefix + "b")
            labhost.sh("ip", "link", "add", "x", "netns", prefix + "a", "type", "veth", "peer",
                       "y", "netns", prefix + "b")  # fmt: skip
        labhost.in_ns(dead + "a", "iptables", "-A", "FORWARD", "-j", "DROP")
        orphan = subprocess.Popen(["ip", "netns", "exec", dead + "a", "sleep", "300"])
        removed = labhost.sweep_leftovers()
        assert sorted(removed) == [dead + "a", dead + "b"]
        assert orphan.wait(5) != 0  # killed by the sweep, not left running
        assert labhost.lab_namespaces(dead) == []
        assert sorted(labhost.lab_namespaces(alive)) == [alive + "a", alive + "b"]
        assert labhost.stray_links() == []
    finally:
        labhost.sweep(alive)
        keeper.kill()
        keeper.wait()


class _BrokenCollector(Lab):
    def _start_collector(self) -> LabProcess:
        return self._spawn("collector", "core", ["false"], ready="listening on")


def test_a_failed_build_leaves_nothing(lab_host: None, tmp_path: Path) -> None:
    broken = _BrokenCollector(tmp_path, CLIENTS[:2], run_id=f"{os.getpid()}b")
    with pytest.raises(RuntimeError, match="listening on"), broken:
        pass
    assert labhost.lab_namespaces(broken.run_prefix) == []
    logs = sorted(p.name for p in tmp_path.glob("*.log"))
    assert "web-dom.log" in logs  # servers had started before the collector failed ...
    assert broken.processes == {}  # ... and were all stopped


def test_a_failing_test_inside_a_lab_leaves_nothing(lab_host: None, tmp_path: Path) -> None:
    small = Lab(tmp_path, CLIENTS[:1], run_id=f"{os.getpid()}f", with_collector=False)
    started: list[subprocess.Popen[bytes]] = []
    with pytest.raises(AssertionError), small:
        started = [p.popen for p in small.processes.values()]
        with applied(small, (Blackhole("www.world.test"),)):
            assert active_rules(small)
            raise AssertionError("a test failing mid-scenario")
    assert started and all(p.poll() is not None for p in started)
    assert labhost.lab_namespaces(small.run_prefix) == []
    assert labhost.stray_links() == []


def test_a_failed_scenario_leaves_no_rules_or_lies(lab: Lab) -> None:
    victim = site("social.world.test")
    with (
        pytest.raises(AssertionError),
        applied(lab, (Blackhole(victim.host), DnsLie(victim.host, "127.0.0.1"))),
    ):
        assert _resolve(lab, victim.host) == "127.0.0.1"
        assert any(victim.ip in rule for rule in active_rules(lab))
        raise AssertionError("a test failing mid-scenario")
    assert active_rules(lab) == []
    assert _resolve(lab, victim.host) == victim.ip
