"""The lab's report: scenario × target × expected × observed, printed at the end of the session."""

from __future__ import annotations

ROWS: list[tuple[str, str, str, str]] = []
NOTES: list[str] = []


def outcome(verdict: str, blocking: str | None, failure: str | None) -> str:
    return f"{verdict}/{blocking or '-'}/{failure or '-'}"


def record(scenario: str, target: str, expected: str, observed: str) -> None:
    ROWS.append((scenario, target, expected, observed))


def lines() -> list[str]:
    if not ROWS and not NOTES:
        return []
    width = max((len(row[1]) for row in ROWS), default=0)
    out = [f"   {'scenario':18} {'target':{width}}  {'expected':44} observed"]
    for scenario, target, expected, observed in ROWS:
        mark = "  " if expected == observed else "!!"
        out.append(f"{mark} {scenario:18} {target:{width}}  {expected:44} {observed}")
    return out + NOTES
