"""Lab fixtures: one lab (namespaces, censor, servers, collector) for the whole session.

Needs root, iproute2, iptables and dnsmasq: skipped with the reason on a laptop, required in CI.
Before building, namespaces that a killed run left behind (``vlab-<dead pid>-*``) are removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import labhost
import labreport
from labagent import LabAgent, init_agents
from labtopo import Lab
from needs import require


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_host() -> None:
    ok, reason = labhost.available()
    require(ok, reason)
    labhost.sweep_leftovers(include_own=True)


@pytest.fixture(scope="session")
def lab(lab_host: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    built = Lab(tmp_path_factory.mktemp("lab"))
    with built:
        yield built
    left = labhost.lab_namespaces(built.run_prefix)
    assert not left, f"lab teardown left namespaces behind: {left}"


@pytest.fixture(scope="session")
def censored_agent(lab: Lab) -> LabAgent:
    """One agent on the mobile carrier in XA-NORTH: the subscriber every technique is tried on."""
    return init_agents(lab, lab.client("north-mobile"), "techniques")[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report = labreport.lines()
    if report:
        terminalreporter.section("censorship lab: expected vs observed (verdict/blocking/failure)")
        for line in report:
            terminalreporter.write_line(line)
