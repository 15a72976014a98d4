"""Verdict names: what one measurement concluded, and the blocking type it suspects.

``Verdict`` is the coarse outcome researchers count (as in OONI's aggregation API);
``Blocking`` names *where* the anomaly was seen (OONI Web Connectivity's ``blocking`` values).
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    OK = "ok"  # every step worked (and matched the control, when there was one)
    ANOMALY = "anomaly"  # a step failed or differed in a way blocking would explain
    CONFIRMED = "confirmed"  # anomaly plus a blockpage fingerprint match: blocking is certain
    FAILURE = "failure"  # the measurement itself could not be made (say, the agent had no network)


class Blocking(StrEnum):
    DNS = "dns"
    TCP_IP = "tcp_ip"
    HTTP_FAILURE = "http-failure"
    HTTP_DIFF = "http-diff"
    DOWN = "down"  # site unreachable from everywhere: not censorship


class Scope(StrEnum):
    DOMESTIC = "domestic"
    INTERNATIONAL = "international"


class NetworkType(StrEnum):
    MOBILE = "mobile"
    WIFI = "wifi"
    WIRED = "wired"
    UNKNOWN = "unknown"
