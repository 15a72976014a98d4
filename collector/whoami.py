"""``GET /api/v1/whoami``: where the caller's public address is, as a token the collector signs.

The requesting address is looked up in MaxMind/DB-IP databases (the ``maxminddb`` reader) and then
forgotten: it is never stored, logged or echoed. The answer carries only country, region, carrier ASN
and name, signed (``protocol.context_token``) so that the agent can copy the token into its
measurements and the collector can check it again at ingest (``check_context_tokens``).

Behind a reverse proxy the address seen here is the proxy's; set the geo databases only on collectors
that see agents directly (reading X-Forwarded-For safely is left to a later change).
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from protocol import Batch, RemoteProtocolError, SignatureError, SigningKey, format_time, utc_now
from protocol.context_token import (
    ContextClaims,
    check_context_claims,
    issue_context_token,
    verify_context_signature,
)
from protocol.mmdb import geo_fields

from .errors import BadRequest, CollectorError, Unauthorized, Unprocessable

_AGENT_ID = re.compile(r"^[0-9a-f]{32}$")


class GeoUnavailable(CollectorError):
    status, code = 503, "geoip_unavailable"


class GeoDatabases:
    """The configured MMDB files, opened once; ``lookup`` merges City and ASN records."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._readers: list[Any] = []

    def open(self) -> None:
        import maxminddb  # a collector-only dependency (the `collector` extra)

        self._readers = [maxminddb.open_database(str(path)) for path in self.paths]

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers = []

    @property
    def available(self) -> bool:
        return bool(self._readers)

    def lookup(self, address: str) -> dict[str, Any]:
        records = []
        for reader in self._readers:
            try:
                records.append(reader.get(address))
            except ValueError:  # an IPv6 caller and an IPv4-only database
                records.append(None)
        return geo_fields(records)


SIGNER = web.AppKey("context_signer", SigningKey)
CONTEXT_KEYS = web.AppKey("context_keys", tuple[bytes, ...])
GEO = web.AppKey("geo", GeoDatabases)
TOKEN_TTL = web.AppKey("context_token_ttl", timedelta)


def setup_whoami(
    app: web.Application, key: SigningKey, geoip_paths: Sequence[Path], ttl: timedelta
) -> None:
    """Sign tokens with the collector key, open the geo databases with the app, add the route."""
    app[SIGNER] = key
    app[CONTEXT_KEYS] = (key.public_key,)
    app[GEO] = GeoDatabases(geoip_paths)
    app[TOKEN_TTL] = ttl

    async def geo_ctx(app: web.Application) -> AsyncIterator[None]:
        app[GEO].open()
        yield
        app[GEO].close()

    app.cleanup_ctx.append(geo_ctx)
    app.router.add_get("/api/v1/whoami", whoami)


async def whoami(request: web.Request) -> web.Response:
    agent_id = request.query.get("agent_id", "")
    if agent_id and not _AGENT_ID.match(agent_id):
        raise BadRequest("agent_id must be 32 lowercase hex characters")
    geo = request.app[GEO]
    if not geo.available:
        raise GeoUnavailable("this collector has no geo database; report your network yourself")
    address = request.remote  # used for this lookup only: never stored, logged or returned
    if not address:
        raise GeoUnavailable("cannot tell the caller's address on this transport")
    fields = geo.lookup(address)
    del address
    now = utc_now()
    claims = ContextClaims(
        country=fields["country"],
        region=fields["region"],
        asn=fields["asn"],
        carrier=fields["carrier"],
        issued_at=now,
        expires_at=now + request.app[TOKEN_TTL],
        agent_id=agent_id,
    )
    key = request.app[SIGNER]
    token = issue_context_token(key, claims)
    return web.json_response(
        {
            "token": base64.b64encode(token).decode(),
            "context": {k: fields[k] for k in ("country", "region", "asn", "carrier")},
            "known": claims.known,
            "issued_at": format_time(claims.issued_at),
            "expires_at": format_time(claims.expires_at),
            "collector_key": base64.b64encode(key.public_key).decode(),
        },
        headers={"Cache-Control": "no-store"},
    )


def check_context_tokens(batch: Batch, public_keys: Sequence[bytes]) -> None:
    """Reject a batch whose collector-backed contexts carry a forged, expired or altered token."""
    signed_by_us: dict[bytes, ContextClaims] = {}  # an agent repeats its token: one check each
    for m in batch.measurements:
        token = m.network.token
        if token is None:
            continue
        try:
            claims = signed_by_us.get(token)
            if claims is None:
                claims = signed_by_us[token] = verify_context_signature(token, public_keys)
            check_context_claims(claims, m.measured_at, m.agent_id)
        except SignatureError as exc:
            raise Unauthorized(
                f"measurement {m.uid}: context token is not the collector's: {exc}",
                code="bad_context_token",
            ) from exc
        except RemoteProtocolError as exc:
            code = exc.reason if exc.reason.startswith("context_") else "bad_context_token"
            raise Unprocessable(f"measurement {m.uid}: {exc}", code=code) from exc
        if not claims.matches(m.network):
            raise Unprocessable(
                f"measurement {m.uid}: network context differs from its token",
                code="context_mismatch",
            )
