"""Token-bucket rate limits, per agent and per client address, held only in this process's memory.

The per-address limiter never keeps an address: it keys on ``HMAC-SHA256(secret, address)`` with a
secret drawn at start-up and never written anywhere, so the table cannot be turned back into addresses
even from a memory dump taken after a restart, and it is never stored or logged. Buckets that have
refilled are forgotten, so memory stays bounded by the number of recently active clients.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float  # 0 disables the limit
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_second > 0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``check(key)`` returns 0 if the request may pass, else the seconds to wait (Retry-After)."""

    def __init__(
        self, rate: Rate, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> float:
        if not self.rate.enabled:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.rate.burst), now)
        bucket.tokens = min(
            float(self.rate.burst), bucket.tokens + (now - bucket.stamp) * self.rate.per_second
        )
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate.per_second

    def _forget_full(self, now: float) -> None:
        refill = self.rate.burst / self.rate.per_second
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.stamp < refill}
        if len(self._buckets) >= self.max_keys:  # a flood of distinct keys: start over, fail open
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


class AddressLimiter:
    """A ``RateLimiter`` keyed by a keyed hash of the client address (see the module docstring)."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._secret = os.urandom(32)
        self.limiter = RateLimiter(rate, clock)

    def key_for(self, address: str) -> str:
        return hmac.new(self._secret, address.encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, address: str | None) -> float:
        if address is None:  # e.g. a Unix socket behind a proxy: nothing to key on
            return 0.0
        return self.limiter.check(self.key_for(address))
