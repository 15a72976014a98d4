"""Human-readable output: the per-target table ``vantage agent once`` prints."""

from __future__ import annotations

from collections.abc import Sequence

from protocol import Measurement
from protocol.tables import render_table


def step_text(m: Measurement) -> tuple[str, str, str, str]:
    dns = m.dns.failure or ",".join(m.dns.answers[:2]) if m.dns else "-"
    if not m.tcp:
        tcp = "-"
    elif any(t.success for t in m.tcp):
        best = min(t.runtime for t in m.tcp if t.success)
        tcp = f"ok {best * 1000:.0f}ms"
    else:
        tcp = m.tcp[0].failure or "?"
    tls = "-" if m.tls is None else m.tls.failure or m.tls.version or "ok"
    http = "-" if m.http is None else m.http.failure or str(m.http.status)
    return dns or "-", tcp, tls, http


def verdict_text(m: Measurement) -> str:
    text = m.verdict.value
    if m.blocking is not None:
        text += f" ({m.blocking.value})"
    if m.fingerprints:
        text += " " + ",".join(hit.name for hit in m.fingerprints[:2])
    return text


def measurement_table(measurements: Sequence[Measurement]) -> str:
    rows = []
    for m in sorted(measurements, key=lambda item: (item.target.scope, item.target.url)):
        dns, tcp, tls, http = step_text(m)
        control = "-" if m.control is None else "yes"
        rows.append(
            [m.target.url, m.target.scope.value, dns, tcp, tls, http, control, verdict_text(m)]
        )
    return render_table(
        ["target", "scope", "dns", "tcp", "tls", "http", "control", "verdict"], rows
    )
