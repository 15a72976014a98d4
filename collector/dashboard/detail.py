"""One measurement, step by step, with its signature checked again on every view.

The collector stores each batch's exact signed bytes. This page re-verifies that signature against the
agent's registered key (``SignedBatch.verify``, i.e. ``protocol.verify``), decodes the measurement from
the verified payload, and shows DNS, TCP, TLS and HTTP as the agent recorded them. When the signature
does not verify (the stored bytes were altered), the page says so and shows only the stored row.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from protocol import Measurement, RemoteProtocolError, SignedBatch, utc_now

from ..app import STORAGE
from ..errors import BadRequest, NotFound
from ..research import MEASUREMENT_FIELDS
from .html import anchor, api_link, esc, link, page, short_time, table
from .views import html_errors

UID = re.compile(r"[0-9a-f]{32}")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def _failure(value: str | None) -> str:
    return (
        "<span class=okay>none</span>" if value is None else f"<code class=fail>{esc(value)}</code>"
    )


def _step(name: str, heading: str, headers: list[str], rows: list[list[str]], absent: str) -> str:
    """One step's section: a table of what the agent recorded, or why the step did not run."""
    content = table(heading, headers, rows) if rows else f"<p>{esc(absent)}</p>"
    return f"<section class=step data-step={name}><h3>{esc(heading)}</h3>{content}</section>"


def steps(m: Measurement) -> str:
    dns = [
        [
            f"<code>{esc(d.resolver)}</code>",
            esc(", ".join(d.answers) or "no addresses"),
            _failure(d.failure),
            _seconds(d.runtime),
        ]
        for d in ((m.dns, *m.dns_extra) if m.dns is not None else ())
    ]
    tcp = [
        [f"<code>{esc(t.ip)}:{t.port}</code>", _failure(t.failure), _seconds(t.runtime)]
        for t in m.tcp
    ]
    tls = [
        [
            f"<code>{esc(t.ip)}:{t.port}</code>",
            esc(t.server_name),
            esc(t.version or ""),
            esc(t.cipher or ""),
            _failure(t.failure),
            _seconds(t.runtime),
        ]
        for t in ((m.tls,) if m.tls is not None else ())
    ]
    http = [
        [
            f"<code>{esc(h.url)}</code>",
            esc("" if h.status is None else h.status),
            esc(h.title or ""),
            esc("" if h.body_length is None else f"{h.body_length} bytes"),
            _failure(h.failure),
            _seconds(h.runtime),
        ]
        for h in ((m.http,) if m.http is not None else ())
    ]
    parts = [
        _step("dns", "DNS", ["resolver", "answers", "failure", "time"], dns, "Not run."),
        _step(
            "tcp",
            "TCP connect",
            ["endpoint", "failure", "time"],
            tcp,
            "Not run (no address to connect to, or the test does not connect).",
        ),
        _step(
            "tls",
            "TLS handshake",
            ["endpoint", "server name (SNI)", "version", "cipher", "failure", "time"],
            tls,
            "Not run (plain HTTP, or no TCP connection succeeded).",
        ),
        _step(
            "http",
            "HTTP",
            ["URL fetched", "status", "page title", "body", "failure", "time"],
            http,
            "Not run (an earlier step failed).",
        ),
    ]
    if m.http is not None and m.http.redirects:
        hops = " → ".join(f"<code>{esc(r.url)}</code> ({r.status})" for r in m.http.redirects)
        parts.append(f"<p>Redirects before the final response: {hops}</p>")
    if m.fingerprints:
        hits = ", ".join(f"{esc(f.name)} ({esc(f.location)})" for f in m.fingerprints)
        parts.append(f"<section class=step><h3>Blockpage fingerprints</h3><p>{hits}</p></section>")
    return "".join(parts)


async def load(request: web.Request, uid: str) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    storage = request.app[STORAGE]
    rows = await storage.fetch(
        f"SELECT {', '.join(MEASUREMENT_FIELDS)} FROM measurements WHERE uid = ?", [uid]
    )
    if not rows:
        raise NotFound(f"no measurement {uid} is stored on this collector")
    row = dict(zip(MEASUREMENT_FIELDS, rows[0], strict=True))
    proof = await storage.fetch(
        "SELECT b.payload, b.signature, a.public_key FROM batches b"
        " JOIN agents a ON a.agent_id = b.agent_id WHERE b.batch_id = ?",
        [row["batch_id"]],
    )
    payload, signature, public_key = (bytes(v) for v in proof[0])
    return row, payload, signature, public_key


def verified_measurement(
    row: dict[str, Any], payload: bytes, signature: bytes, public_key: bytes
) -> tuple[Measurement | None, str]:
    """``(measurement from the verified payload, None)`` or ``(None, why it does not verify)``."""
    try:
        batch = SignedBatch(row["agent_id"], payload, signature).verify(public_key)
    except RemoteProtocolError as exc:
        return None, str(exc)
    found = next((m for m in batch.measurements if m.uid == row["uid"]), None)
    if found is None:
        return None, "the signed batch does not contain this measurement"
    return found, ""


@html_errors("/dashboard/measurements")
async def measurement_detail(request: web.Request) -> web.Response:
    uid = request.match_info["uid"]
    if not UID.fullmatch(uid):
        raise BadRequest("a measurement id is 32 lowercase hex characters")
    row, payload, signature, public_key = await load(request, uid)
    measurement, problem = verified_measurement(row, payload, signature, public_key)
    if measurement is not None:
        signature_html = (
            "<p class='signature verified' data-signature=verified>✔ Signature verified: the"
            " agent's Ed25519 signature over the stored batch was checked again just now against"
            " its registered key.</p>"
        )
    else:
        signature_html = (
            "<p class='signature failed' data-signature=failed>✘ Signature does NOT verify:"
            f" {esc(problem)}. Do not trust the figures below.</p>"
        )
    facts = [
        ("Measured", short_time(row["measured_at"]) + " UTC"),
        ("Received", short_time(row["received_at"]) + " UTC"),
        ("Target", row["url"]),
        ("Scope", f"{row['scope']} ({row['category']})"),
        (
            "Network",
            f"{row['country']} {row['region']}, {row['carrier']} AS{row['asn']} ({row['network_type']}, {row['network_source']})",
        ),
        ("Verdict", row["verdict"]),
        ("Blocking", row["blocking"] or "none suspected"),
        ("Failure", row["failure"] or "none"),
        ("Agent", row["agent_id"]),
        ("Batch", row["batch_id"]),
    ]
    dl = "".join(
        f"<dt>{esc(k)}</dt><dd data-field='{esc(k.lower())}'>{esc(v)}</dd>" for k, v in facts
    )
    export = link("/api/v1/export", {"batch_id": row["batch_id"]})
    body = (
        signature_html
        + f"<dl class=facts>{dl}</dl>"
        + (
            "<h2>Steps</h2>" + steps(measurement)
            if measurement is not None
            else "<p>The per-step results come from the signed payload, which failed verification.</p>"
        )
        + "<p>"
        + anchor(
            link("/dashboard/measurements", {"batch_id": row["batch_id"]}),
            "Other measurements of this batch",
        )
        + "</p>"
        + api_link(export, "the signed batch with its proof (JSON Lines)")
        + "<p class=hint>To check it yourself: Ed25519-verify <code>signature</code> over"
        " <code>vantage/batch/v1\\0</code> + <code>payload</code> with"
        " <code>agent_public_key</code> from that export.</p>"
    )
    return page(
        f"Measurement of {row['host']}", body, active="/dashboard/measurements", generated=utc_now()
    )
