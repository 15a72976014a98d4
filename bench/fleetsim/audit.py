"""Exactly once: what the agents were told is stored versus what the database holds.

The ledger records every batch an agent signed and every acknowledgement it received. After the run
(spools drained) the audit reads the collector's database and checks:

- every acknowledged batch is stored, with the very bytes that were acknowledged (payload hash) and
  exactly as many measurement rows as it carried;
- nothing is stored twice: measurement rows equal the sum over stored batches, and the hourly rollups
  count each row once (a retried batch that bumped the rollups again would show here);
- nothing was lost: every batch signed was eventually acknowledged, and nothing unknown is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.storage import Storage


@dataclass(frozen=True, slots=True)
class Pending:
    batch_id: str
    body: bytes
    sha256: str
    count: int


@dataclass
class Ledger:
    generated: dict[str, int] = field(default_factory=dict)  # batch_id -> measurements
    acknowledged: dict[str, str] = field(default_factory=dict)  # batch_id -> payload sha256
    acknowledgements: int = 0
    duplicate_acks: int = 0  # "duplicate": stored earlier, the first acknowledgement was lost

    def acknowledge(self, pending: Pending, answer: dict[str, Any]) -> None:
        self.acknowledgements += 1
        if answer.get("status") == "duplicate":
            self.duplicate_acks += 1
        self.acknowledged[pending.batch_id] = pending.sha256


@dataclass(frozen=True, slots=True)
class AuditResult:
    acknowledged: int
    generated: int
    stored_batches: int
    stored_rows: int
    expected_rows: int  # what the stored batches carried, by the ledger
    rollup_rows: int
    missing: int  # acknowledged but not stored
    wrong_content: int  # stored with another hash or another number of rows than acknowledged
    unacknowledged: int  # signed but never acknowledged (lost, or still spooled)
    unknown: int  # stored but never signed by this fleet
    duplicate_acks: int

    @property
    def exactly_once(self) -> bool:
        return (
            self.missing == 0
            and self.wrong_content == 0
            and self.unknown == 0
            and self.stored_rows == self.expected_rows == self.rollup_rows
        )

    @property
    def nothing_lost(self) -> bool:
        return self.unacknowledged == 0

    def to_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "exactly_once": self.exactly_once,
            "nothing_lost": self.nothing_lost,
        }


async def audit(storage: Storage, ledger: Ledger) -> AuditResult:
    batches = {
        batch_id: (sha, int(count))
        for batch_id, sha, count in await storage.fetch(
            "SELECT batch_id, payload_sha256, measurements FROM batches"
        )
    }
    rows = {
        batch_id: int(n)
        for batch_id, n in await storage.fetch(
            "SELECT batch_id, COUNT(*) FROM measurements GROUP BY batch_id"
        )
    }
    rollup = await storage.fetch("SELECT COALESCE(SUM(n), 0) FROM rollup_hourly")
    missing = wrong = 0
    for batch_id, sha in ledger.acknowledged.items():
        if batch_id not in batches:
            missing += 1
        elif batches[batch_id][0] != sha or rows.get(batch_id, 0) != ledger.generated[batch_id]:
            wrong += 1
    return AuditResult(
        acknowledged=len(ledger.acknowledged),
        generated=len(ledger.generated),
        stored_batches=len(batches),
        stored_rows=sum(rows.values()),
        expected_rows=sum(ledger.generated.get(batch_id, 0) for batch_id in batches),
        rollup_rows=int(rollup[0][0]),
        missing=missing,
        wrong_content=wrong,
        unacknowledged=len(ledger.generated.keys() - ledger.acknowledged.keys()),
        unknown=len(batches.keys() - ledger.generated.keys()),
        duplicate_acks=ledger.duplicate_acks,
    )
