"""Versioned schema migrations, one list for both SQL dialects so the backends stay in step.

``schema_version`` holds one row per applied migration; the database's version is its maximum. A
migration runs in one transaction together with the row that records it (both SQLite and PostgreSQL
have transactional DDL), so a crash leaves the schema either before or after a step, never halfway.
Add a migration by appending to ``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rollups import AGENTS, COUNTS, ROAMERS, ROLLUP_COLUMNS, ROLLUP_FROM_RAW, Rollup


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sqlite: str
    postgresql: str


V1_SQLITE = """
CREATE TABLE IF NOT EXISTS agents (
    agent_id      TEXT PRIMARY KEY,
    public_key    BLOB NOT NULL,
    registered_at TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id       TEXT PRIMARY KEY,
    agent_id       TEXT NOT NULL REFERENCES agents(agent_id),
    received_at    TEXT NOT NULL,
    payload        BLOB NOT NULL,
    signature      BLOB NOT NULL,
    payload_sha256 TEXT NOT NULL,
    measurements   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    uid            TEXT PRIMARY KEY,
    batch_id       TEXT NOT NULL REFERENCES batches(batch_id),
    agent_id       TEXT NOT NULL,
    measured_at    TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    test           TEXT NOT NULL,
    country        TEXT NOT NULL,
    region         TEXT NOT NULL,
    asn            INTEGER NOT NULL,
    carrier        TEXT NOT NULL,
    network_type   TEXT NOT NULL,
    network_source TEXT NOT NULL,
    url            TEXT NOT NULL,
    host           TEXT NOT NULL,
    scope          TEXT NOT NULL,
    category       TEXT NOT NULL,
    verdict        TEXT NOT NULL,
    blocking       TEXT,
    failure        TEXT,
    dns_failure    TEXT,
    tcp_failure    TEXT,
    http_failure   TEXT,
    http_status    INTEGER,
    runtime        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_by_time ON measurements (measured_at);
CREATE INDEX IF NOT EXISTS measurements_by_place ON measurements (country, region, asn, measured_at);
"""

# Text columns use the "C" collation: times are compared as fixed-width ISO text (like SQLite does),
# and answers are ordered the same on both backends whatever locale the cluster was created with.
V1_POSTGRESQL = """
CREATE TABLE agents (
    agent_id      TEXT COLLATE "C" PRIMARY KEY,
    public_key    BYTEA NOT NULL,
    registered_at TEXT COLLATE "C" NOT NULL,
    revoked_at    TEXT COLLATE "C"
);
CREATE TABLE batches (
    batch_id       TEXT COLLATE "C" PRIMARY KEY,
    agent_id       TEXT COLLATE "C" NOT NULL REFERENCES agents(agent_id),
    received_at    TEXT COLLATE "C" NOT NULL,
    payload        BYTEA NOT NULL,
    signature      BYTEA NOT NULL,
    payload_sha256 TEXT COLLATE "C" NOT NULL,
    measurements   INTEGER NOT NULL
);
CREATE TABLE measurements (
    uid            TEXT COLLATE "C" PRIMARY KEY,
    batch_id       TEXT COLLATE "C" NOT NULL REFERENCES batches(batch_id),
    agent_id       TEXT COLLATE "C" NOT NULL,
    measured_at    TEXT COLLATE "C" NOT NULL,
    received_at    TEXT COLLATE "C" NOT NULL,
    test           TEXT COLLATE "C" NOT NULL,
    country        TEXT COLLATE "C" NOT NULL,
    region         TEXT COLLATE "C" NOT NULL,
    asn            BIGINT NOT NULL,
    carrier        TEXT COLLATE "C" NOT NULL,
    network_type   TEXT COLLATE "C" NOT NULL,
    network_source TEXT COLLATE "C" NOT NULL,
    url            TEXT COLLATE "C" NOT NULL,
    host           TEXT COLLATE "C" NOT NULL,
    scope          TEXT COLLATE "C" NOT NULL,
    category       TEXT COLLATE "C" NOT NULL,
    verdict        TEXT COLLATE "C" NOT NULL,
    blocking       TEXT COLLATE "C",
    failure        TEXT COLLATE "C",
    dns_failure    TEXT COLLATE "C",
    tcp_failure    TEXT COLLATE "C",
    http_failure   TEXT COLLATE "C",
    http_status    INTEGER,
    runtime        DOUBLE PRECISION NOT NULL
);
CREATE INDEX measurements_by_time ON measurements (measured_at);
CREATE INDEX measurements_by_place ON measurements (country, region, asn, measured_at);
"""


def _rollup_table(text: str, big: str) -> str:
    # One row per (hour, place, carrier, network type, scope, test, verdict, blocking, agent): summing
    # ``n`` gives counts, counting agent_id gives distinct agents, for any grouping of those columns.
    # ``blocking`` is '' rather than NULL because key columns cannot be NULL in PostgreSQL.
    columns = ",\n    ".join(
        f"{name} {big if name == 'asn' else text} NOT NULL" for name in ROLLUP_COLUMNS
    )
    return f"""
CREATE TABLE rollup_hourly (
    {columns},
    n {big} NOT NULL,
    PRIMARY KEY ({", ".join(ROLLUP_COLUMNS)})
);
CREATE INDEX rollup_hourly_by_bucket ON rollup_hourly (bucket);
INSERT INTO rollup_hourly ({", ".join(ROLLUP_COLUMNS)}, n) {ROLLUP_FROM_RAW};
"""


def _operator_tables(text: str, blob: str, big: str) -> str:
    # Operator documents (test lists, key sets) are kept as the exact signed bytes and served unchanged.
    return f"""
CREATE TABLE operator_keysets (
    version      {big} PRIMARY KEY,
    document     {blob} NOT NULL,
    published_at {text} NOT NULL
);
CREATE TABLE testlists (
    list_id      {text} NOT NULL,
    version      {big} NOT NULL,
    expires_at   {text} NOT NULL,
    document     {blob} NOT NULL,
    sha256       {text} NOT NULL,
    published_at {text} NOT NULL,
    PRIMARY KEY (list_id, version)
);
CREATE TABLE testlist_refusals (
    agent_id    {text} NOT NULL REFERENCES agents(agent_id),
    reported_at {text} NOT NULL,
    refused_at  {text} NOT NULL,
    reason      {text} NOT NULL,
    message     {text} NOT NULL,
    list_id     {text} NOT NULL,
    version     {big} NOT NULL,
    sha256      {text} NOT NULL
);
CREATE INDEX testlist_refusals_by_agent ON testlist_refusals (agent_id);
-- `vantage operator agents`: last seen, counts and context per agent without scanning everything.
CREATE INDEX batches_by_agent ON batches (agent_id, received_at);
CREATE INDEX measurements_by_agent ON measurements (agent_id, measured_at);
"""


def _disruption_tables(text: str, real: str, big: str) -> str:
    # One row per detected disruption (collector/disruptions.py), rewritten as late data reshapes it;
    # ``evidence`` is a JSON object of counts. ``disruption_events`` is the open/close/update log the
    # Atom feed and webhooks are made from; ``seq`` orders it (the detector runs one pass at a time).
    return f"""
CREATE TABLE disruptions (
    id           {text} PRIMARY KEY,
    pattern      {text} NOT NULL,
    country      {text} NOT NULL,
    region       {text} NOT NULL,
    asn          {big} NOT NULL,
    carrier      {text} NOT NULL,
    network_type {text} NOT NULL,
    scope        {text} NOT NULL,
    domain       {text} NOT NULL,
    started_at   {text} NOT NULL,
    ended_at     {text},
    severity     {text} NOT NULL,
    baseline     {real},
    current      {real},
    agents       {big} NOT NULL,
    confirmed    {big} NOT NULL,
    evidence     {text} NOT NULL,
    opened_at    {text} NOT NULL,
    updated_at   {text} NOT NULL
);
CREATE INDEX disruptions_by_start ON disruptions (started_at);
CREATE INDEX disruptions_by_place ON disruptions (country, region, asn, network_type);
CREATE TABLE disruption_events (
    seq           {big} NOT NULL PRIMARY KEY,
    disruption_id {text} NOT NULL,
    kind          {text} NOT NULL,
    at            {text} NOT NULL,
    document      {text} NOT NULL
);
"""


def _narrow_rollups(text: str, big: str, clustered: str) -> str:
    # rollup_counts keeps the place, hour and scope of rollup_hourly's key, with the verdicts and the
    # number of distinct agents as columns (so it stays the size of places x hours, whatever the
    # fleet and the test list); rollup_agents and rollup_roamers keep what exact distinct-agent
    # counts need (collector/rollups.py). ``clustered`` makes SQLite store rows in key order (hour
    # first): a time range is one sequential read with no second lookup per row.
    def table(rollup: Rollup) -> str:
        columns = [f"{name} {big if name == 'asn' else text} NOT NULL" for name in rollup.columns]
        columns += [f"{name} {big} NOT NULL" for name in rollup.values]
        return f"""
CREATE TABLE {rollup.table} (
    {", ".join(columns)},
    PRIMARY KEY ({", ".join(rollup.columns)})
){clustered};
{rollup.backfill_sql()}
"""

    return (
        table(COUNTS)
        + table(AGENTS)
        + table(ROAMERS)
        + "CREATE INDEX rollup_agents_by_agent ON rollup_agents (agent_id, bucket, scope);\n"
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "agents, raw batches, narrow measurement rows", V1_SQLITE, V1_POSTGRESQL),
    Migration(
        2,
        "hourly rollups with agents, backfilled from existing rows",
        _rollup_table("TEXT", "INTEGER"),
        _rollup_table('TEXT COLLATE "C"', "BIGINT"),
    ),
    Migration(
        3,
        "operator key sets, signed test lists, agents' refusal reports",
        _operator_tables("TEXT", "BLOB", "INTEGER"),
        _operator_tables('TEXT COLLATE "C"', "BYTEA", "BIGINT"),
    ),
    Migration(
        4,
        "detected disruptions and their open/update/close log",
        _disruption_tables("TEXT", "REAL", "INTEGER"),
        _disruption_tables('TEXT COLLATE "C"', "DOUBLE PRECISION", "BIGINT"),
    ),
    Migration(
        5,
        "rollups per place and hour (counts, agents, roaming agents), backfilled from raw rows",
        _narrow_rollups("TEXT", "INTEGER", " WITHOUT ROWID"),
        _narrow_rollups('TEXT COLLATE "C"', "BIGINT", ""),
    ),
)

LATEST = MIGRATIONS[-1].version

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this collector speaks."""


def check_version(current: int, url: str) -> None:
    if current > LATEST:
        raise SchemaMismatch(
            f"database schema is version {current}, newer than this collector ({LATEST});"
            " upgrade vantagepoint"
        )
    if current < LATEST:
        raise SchemaMismatch(
            f"database schema is version {current}, this collector needs {LATEST}:"
            f" run `vantage collector migrate --db {url}` (or serve with --migrate)"
        )
