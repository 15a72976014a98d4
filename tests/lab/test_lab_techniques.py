"""Every blocking technique on a real censor, measured by the real agent, stored by the real collector.

Each scenario is applied to the censor (iptables in its SCENARIO chains, lies in the ISP resolver),
the agent in XA-NORTH's mobile network measures the victims plus two bystanders (one domestic, one
international site the censor leaves alone), uploads, and the verdict, blocking type and failure
string of every target are checked in the agent's output and in the collector's database.
"""

from __future__ import annotations

import pytest

import labreport
from labagent import LabAgent, run_agents, write_targets
from labscenario import (
    Blackhole,
    Divert,
    DnsLie,
    Expect,
    ResetOnString,
    Scenario,
    ServerDown,
    active_rules,
    applied,
    target_rows,
)
from labtopo import BLOCKPAGE_IP, NOTICE_HOST, REDIRECT_IP, Lab

BYSTANDERS = (
    Expect("https://bank.domestic.test/", "ok"),
    Expect("https://www.world.test/", "ok"),
)

SCENARIOS = (
    Scenario(
        "dns-bogon",
        "DNS injection of a bogon (127.0.0.1)",
        (DnsLie("social.world.test", "127.0.0.1"),),
        (Expect("https://social.world.test/", "anomaly", "dns", "dns_bogon_error"),),
    ),
    Scenario(
        "dns-blockpage-ip",
        "DNS injection of the censor's (routable) blockpage host",
        (DnsLie("video.world.test", BLOCKPAGE_IP),),
        (
            # Over HTTP the agent lands on the blockpage: the DNS answer is a known fingerprint.
            Expect("http://video.world.test/", "confirmed", "dns", None, "dns_lab_censor"),
            # The blockpage host has nothing on 443: refused, and the answer differs from the control's.
            Expect("https://video.world.test/", "confirmed", "dns", "connection_refused"),
        ),
    ),
    Scenario(
        "dns-nxdomain",
        "NXDOMAIN injection",
        (DnsLie("news.world.test", None),),
        (Expect("https://news.world.test/", "anomaly", "dns", "dns_nxdomain_error"),),
    ),
    Scenario(
        "rst-host",
        "TCP RST on the HTTP Host header",
        (ResetOnString("chat.world.test", 80),),
        (
            Expect("http://chat.world.test/", "anomaly", "http-failure", "connection_reset"),
            Expect("https://chat.world.test/", "ok"),  # the filter only reads port 80
        ),
    ),
    Scenario(
        "rst-sni",
        "TCP RST on the TLS SNI",
        (ResetOnString("forum.world.test", 443),),
        (
            Expect("https://forum.world.test/", "anomaly", "http-failure", "connection_reset"),
            Expect("http://forum.world.test/", "ok"),
        ),
    ),
    Scenario(
        "ip-blackhole",
        "IP blackholing (DROP)",
        (Blackhole("search.world.test"),),
        (Expect("https://search.world.test/", "anomaly", "tcp_ip", "generic_timeout_error"),),
    ),
    Scenario(
        "http-blockpage",
        "blockpage served in place of the site",
        (Divert("blog.world.test", 80, BLOCKPAGE_IP),),
        (Expect("http://blog.world.test/", "confirmed", "http-diff", None, "ir_iframe_10_10"),),
    ),
    Scenario(
        "http-redirect",
        "302 redirect to a blockpage",
        (Divert("wiki.world.test", 80, REDIRECT_IP),),
        (Expect("http://wiki.world.test/", "anomaly", "http-diff", None),),
    ),
    Scenario(
        "site-down",
        "site down for everyone (not censorship)",
        (ServerDown("gone.world.test"),),
        (Expect("https://gone.world.test/", "failure", "down", "connection_refused"),),
    ),
)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_technique_is_classified(lab: Lab, censored_agent: LabAgent, scenario: Scenario) -> None:
    expect = scenario.expect + BYSTANDERS
    targets = write_targets(lab.workdir / f"{scenario.name}.csv", target_rows(expect))
    with applied(lab, scenario.actions):
        (run,) = run_agents([censored_agent], "once", "--targets", str(targets))
    assert run.code == 0, f"agent once exited {run.code}: {run.stderr}"
    assert run.document["upload"]["left"] == 0
    measured = run.by_url()
    stored = lab.stored([m["uid"] for m in measured.values()], "verdict, blocking, failure")
    problems = []
    for e in expect:
        m = measured[e.url]
        observed = labreport.outcome(m["verdict"], m["blocking"], m["failure"])
        wanted = labreport.outcome(e.verdict, e.blocking, e.failure)
        labreport.record(scenario.name, e.url, wanted, observed)
        if observed != wanted:
            problems.append(f"{e.url}: expected {wanted}, observed {observed}; {m}")
        row = stored[m["uid"]]  # the collector stored what the agent signed
        if (row["verdict"], row["blocking"], row["failure"]) != (
            m["verdict"],
            m["blocking"],
            m["failure"],
        ):
            problems.append(f"{e.url}: collector stored {dict(row)}")
        names = [hit["name"] for hit in m["fingerprints"]]
        if e.fingerprint is not None and e.fingerprint not in names:
            problems.append(f"{e.url}: fingerprint {e.fingerprint} not among {names}")
    assert not problems, "\n".join(problems)
    assert not active_rules(lab), "the scenario's rules outlived it"


def test_redirect_hop_leads_to_the_censors_notice(lab: Lab, censored_agent: LabAgent) -> None:
    """The 302 is recorded hop by hop: the final page is the censor's, not the site's."""
    targets = write_targets(
        lab.workdir / "redirect.csv", [("http://wiki.world.test/", "international")]
    )
    with applied(lab, (Divert("wiki.world.test", 80, REDIRECT_IP),)):
        (run,) = run_agents([censored_agent], "once", "--targets", str(targets))
    http = run.by_url()["http://wiki.world.test/"]["http"]
    assert any(NOTICE_HOST in str(hop) for hop in http["redirects"]), http
    assert http["title"] == "Notice"
