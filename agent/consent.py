"""Informed consent: running a measurement agent can be risky, and the volunteer must say yes."""

from __future__ import annotations

import sys

from .errors import ConfigError

RISKS = """\
Before you run a Vantage measurement agent, please understand the risks.

* The agent connects to websites that may be blocked where you are (news, human rights, social
  media, circumvention tools). Anyone watching your network - your carrier, your employer, your
  government - can see that this device tried to reach them.
* In some countries, accessing or testing blocked content is illegal or can draw attention from
  the authorities. Running this agent may expose you to legal or other consequences.
* Results are uploaded to the collector, signed with this device's key. They include your
  country, region, carrier and network type, but never your IP address. The collector sees your
  IP address when you connect to it (as any server does); it does not store or log it.
* Published results are public; they can tell that *a* volunteer measured from your carrier and
  region at a given time.
* The agent uses some data (a daily budget can be set) and runs in the background on a low
  priority; on battery it pauses below 20 %.

Read more: OONI's "Risks" document describes the same considerations for OONI Probe.
"""


def require_consent(accepted: bool, *, stdin: object = None, ask: object = None) -> None:
    """Return if the volunteer accepted the risks; raise ``ConfigError`` (exit 2) otherwise."""
    if accepted:
        return
    stream = stdin if stdin is not None else sys.stdin
    if not getattr(stream, "isatty", lambda: False)():
        raise ConfigError(
            "informed consent needed: run `vantage agent init` in a terminal to read the risks"
            " and answer yes, or pass --accept-risks for an unattended install (after reading"
            " them: `vantage agent init --help`)"
        )
    print(RISKS, file=sys.stderr)
    prompt = ask if callable(ask) else input
    answer = str(prompt("Do you understand these risks and want to run the agent? [yes/no] "))
    if answer.strip().lower() not in ("yes", "y"):
        raise ConfigError("consent not given: nothing was created")
