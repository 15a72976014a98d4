"""Rate limiters: token buckets with an injected clock; the address limiter never holds an address."""

from __future__ import annotations

from collector.ratelimit import AddressLimiter, Rate, RateLimiter, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_wait_then_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(per_second=2, burst=3), clock)
    assert [limiter.check("a") for _ in range(3)] == [0, 0, 0]
    wait = limiter.check("a")
    assert 0.49 < wait <= 0.5
    assert retry_after_header(wait) == "1"
    assert limiter.check("b") == 0  # keys are independent
    clock.now += 0.5
    assert limiter.check("a") == 0
    assert limiter.check("a") > 0


def test_disabled_rate_never_limits_and_keeps_nothing() -> None:
    limiter = RateLimiter(Rate(per_second=0, burst=0), Clock())
    assert all(limiter.check("a") == 0 for _ in range(100))
    assert len(limiter) == 0


def test_memory_is_bounded_by_forgetting_refilled_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(per_second=1, burst=2), clock, max_keys=10)
    for i in range(10):
        limiter.check(f"k{i}")
    clock.now += 5  # everyone has refilled
    limiter.check("new")
    assert len(limiter) == 1


def test_address_limiter_keys_on_a_per_process_keyed_hash() -> None:
    one, two = AddressLimiter(Rate(1, 1)), AddressLimiter(Rate(1, 1))
    key = one.key_for("198.18.0.7")
    assert "198.18.0.7" not in key and key == one.key_for("198.18.0.7")
    assert key != two.key_for("198.18.0.7")  # a different secret: nothing to correlate across runs
    assert one.check("198.18.0.7") == 0 and one.check("198.18.0.7") > 0
    assert one.check(None) == 0
