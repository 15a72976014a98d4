"""How much verifying a signed test list costs an agent, against just decoding its bytes.

Run: .venv/bin/python bench/testlist_verify.py [entries]. Prints times and the ratio to the baseline
(canonical_decode of the same signed bytes, which any agent must do anyway), measured in this run.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from protocol import Scope, SigningKey, canonical_decode, utc_now
from protocol.keyset import pinned_root
from protocol.signed_doc import DOCUMENT_LIMITS
from protocol.testlist import Entry, TestList, sign_testlist, verify_testlist


def best_of(repeat: int, work: object) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    key = SigningKey.generate()
    now = utc_now()
    entries = tuple(
        Entry(f"https://site{i}.example{i % 7}.test/path/{i}", Scope.INTERNATIONAL, "NEWS")
        for i in range(count)
    )
    testlist = TestList("bench", 1, now, now + timedelta(days=7), entries)
    data = sign_testlist(testlist, [key]).to_bytes()
    envelope_signed = canonical_decode(data, DOCUMENT_LIMITS)["signed"]
    keyset = pinned_root([key.public_key])
    baseline = best_of(5, lambda: canonical_decode(envelope_signed, DOCUMENT_LIMITS))
    verify = best_of(5, lambda: verify_testlist(data, keyset, now))
    sign = best_of(3, lambda: sign_testlist(testlist, [key]))
    print(f"list: {count} entries, {len(data) / 1024:.0f} KiB signed")
    print(f"decode only (baseline): {baseline * 1000:8.1f} ms")
    print(f"verify_testlist:        {verify * 1000:8.1f} ms  ({verify / baseline:.1f}x baseline)")
    print(f"sign_testlist:          {sign * 1000:8.1f} ms  ({sign / baseline:.1f}x baseline)")


if __name__ == "__main__":
    main()
