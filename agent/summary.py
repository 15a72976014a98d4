"""Human-readable output: the per-target table ``vantage agent once`` prints."""

from __future__ import annotations

from collections.abc import Sequence

from protocol import Measurement
from protocol.tables import render_table


def step_text(m: Measurement) -> tuple[str, str, str]:
    dns = m.dns.failure or ",".join(m.dns.answers[:2]) if m.dns else "-"
    if not m.tcp:
        tcp = "-"
    elif any(t.success for t in m.tcp):
        best = min(t.runtime for t in m.tcp if t.success)
        tcp = f"ok {best * 1000:.0f}ms"
    else:
        tcp = m.tcp[0].failure or "?"
    http = "-" if m.http is None else m.http.failure or str(m.http.status)
    return dns or "-", tcp, http


def measurement_table(measurements: Sequence[Measurement]) -> str:
    rows = []
    for m in sorted(measurements, key=lambda item: (item.target.scope, item.target.url)):
        dns, tcp, http = step_text(m)
        rows.append([m.target.url, m.target.scope.value, dns, tcp, http, m.verdict.value])
    return render_table(["target", "scope", "dns", "tcp", "http", "verdict"], rows)
