"""The pure verdict (protocol/classify.py): OONI's rules, one at a time."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import Blocking, DnsResult, HttpResult, TcpResult, Verdict
from protocol import failures as F
from protocol.classify import (
    body_proportion_match,
    classify,
    compare_http,
    dns_consistent,
    headers_match,
    title_match,
)
from protocol.fingerprints import Hit
from protocol.messages import ControlResult, TlsResult

SITE_IP, CDN_IP, OTHER_IP = "198.51.100.7", "198.51.100.8", "203.0.113.9"


def dns(*answers: str, failure: str | None = None) -> DnsResult:
    return DnsResult("system", answers, failure, 0.01)


def tcp(ip: str = SITE_IP, failure: str | None = None) -> TcpResult:
    return TcpResult(ip, 443, failure, 0.01)


def http(**kw: Any) -> HttpResult:
    values: dict[str, Any] = {
        "url": "https://site.example/",
        "status": 200,
        "body_length": 1000,
        "body_sha256": None,
        "title": "Independent Newsroom Frontpage",
        "failure": None,
        "runtime": 0.1,
        "header_names": ("content-type", "x-site-build"),
    }
    values.update(kw)
    return HttpResult(**values)


def control(**kw: Any) -> ControlResult:
    values: dict[str, Any] = {
        "dns_answers": (SITE_IP,),
        "dns_failure": None,
        "tcp": (tcp(),),
        "tls_failure": None,
        "http_status": 200,
        "http_body_length": 1000,
        "http_title": "Independent Newsroom Frontpage",
        "http_header_names": ("content-type", "x-site-build"),
        "http_failure": None,
    }
    values.update(kw)
    return ControlResult(**values)


def outcome(**kw: Any) -> tuple[Verdict, Blocking | None, str | None]:
    c = classify(**kw)
    return c.verdict, c.blocking, c.failure


def test_everything_matching_is_ok() -> None:
    assert outcome(dns=dns(SITE_IP), tcp=[tcp()], http=http(), control=control()) == (
        Verdict.OK,
        None,
        None,
    )


def test_dns_failure_where_control_resolves_is_dns() -> None:
    got = outcome(dns=dns(failure=F.DNS_NXDOMAIN), control=control())
    assert got == (Verdict.ANOMALY, Blocking.DNS, F.DNS_NXDOMAIN)


def test_both_nxdomain_is_consistent_and_down() -> None:
    probe = dns(failure=F.DNS_NXDOMAIN)
    ctl = control(dns_answers=(), dns_failure=F.DNS_NXDOMAIN, tcp=(), http_status=None,
                  http_failure=F.DNS_NXDOMAIN)  # fmt: skip
    assert dns_consistent(probe, ctl)
    assert outcome(dns=probe, control=ctl) == (Verdict.FAILURE, Blocking.DOWN, F.DNS_NXDOMAIN)


def test_tcp_failure_with_consistent_dns_is_tcp_ip() -> None:
    got = outcome(dns=dns(SITE_IP), tcp=[tcp(failure=F.GENERIC_TIMEOUT)], control=control())
    assert got == (Verdict.ANOMALY, Blocking.TCP_IP, F.GENERIC_TIMEOUT)


def test_inconsistent_dns_overrides_tcp_ip() -> None:
    got = outcome(dns=dns(OTHER_IP), tcp=[tcp(OTHER_IP, F.CONNECTION_REFUSED)], control=control())
    assert got == (Verdict.ANOMALY, Blocking.DNS, F.CONNECTION_REFUSED)


def test_same_asn_makes_different_answers_consistent() -> None:
    ctl = control(asns=((SITE_IP, 64496), (CDN_IP, 64496), (OTHER_IP, 64511)))
    assert dns_consistent(dns(CDN_IP), ctl)
    assert not dns_consistent(dns(OTHER_IP), ctl)
    got = outcome(dns=dns(CDN_IP), tcp=[tcp(CDN_IP, F.CONNECTION_RESET)], control=ctl)
    assert got == (Verdict.ANOMALY, Blocking.TCP_IP, F.CONNECTION_RESET)


def test_valid_certificate_for_the_name_makes_dns_consistent() -> None:
    tls = TlsResult(
        CDN_IP, 443, "site.example", "TLSv1.3", "TLS_AES_128_GCM_SHA256", None, None, 0.1
    )
    assert dns_consistent(dns(CDN_IP), control(), tls)
    assert not dns_consistent(dns(CDN_IP), control(), None)


def test_bogon_is_never_consistent_by_asn() -> None:
    ctl = control(asns=((SITE_IP, 64496), ("10.0.0.1", 64496)))
    assert not dns_consistent(dns("10.0.0.1", failure=F.DNS_BOGON), ctl)


def test_tls_failure_where_control_fetches_is_http_failure() -> None:
    tls = TlsResult(SITE_IP, 443, "site.example", None, None, None, F.SSL_INVALID_HOSTNAME, 0.1)
    got = outcome(dns=dns(SITE_IP), tcp=[tcp()], tls=tls, control=control())
    assert got == (Verdict.ANOMALY, Blocking.HTTP_FAILURE, F.SSL_INVALID_HOSTNAME)


def test_http_failure_for_both_is_down() -> None:
    ctl = control(http_status=None, http_body_length=None, http_title=None, http_header_names=(),
                  http_failure=F.GENERIC_TIMEOUT)  # fmt: skip
    failed = http(
        status=None, failure=F.GENERIC_TIMEOUT, title=None, body_length=None, header_names=()
    )
    got = outcome(dns=dns(SITE_IP), tcp=[tcp()], http=failed, control=ctl)
    assert got == (Verdict.FAILURE, Blocking.DOWN, F.GENERIC_TIMEOUT)


def test_different_page_is_http_diff_and_similar_page_is_ok() -> None:
    blockpage = http(body_length=120, title="Access Denied Notice", header_names=("x-filter",))
    got = outcome(dns=dns(SITE_IP), tcp=[tcp()], http=blockpage, control=control())
    assert got == (Verdict.ANOMALY, Blocking.HTTP_DIFF, None)
    # Only the body length matching is enough once the status matches.
    similar = http(body_length=900, title="Something Else Entirely", header_names=("x-filter",))
    assert outcome(dns=dns(SITE_IP), tcp=[tcp()], http=similar, control=control())[0] == Verdict.OK


def test_status_mismatch_is_http_diff() -> None:
    got = outcome(dns=dns(SITE_IP), tcp=[tcp()], http=http(status=403), control=control())
    assert got == (Verdict.ANOMALY, Blocking.HTTP_DIFF, None)


def test_control_5xx_status_is_not_compared() -> None:
    comparison = compare_http(http(status=200), control(http_status=503))
    assert comparison.status_match is None and not comparison.accessible


def test_fingerprint_makes_it_confirmed_even_without_control() -> None:
    got = outcome(dns=dns("10.10.34.34", failure=F.DNS_BOGON), fingerprints=[Hit("ir", "dns")])
    assert got == (Verdict.CONFIRMED, Blocking.DNS, F.DNS_BOGON)
    body = outcome(dns=dns(SITE_IP), tcp=[tcp()], http=http(), fingerprints=[Hit("x", "body")])
    assert body == (Verdict.CONFIRMED, Blocking.HTTP_DIFF, None)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"dns": dns(failure=F.DNS_REFUSED)}, (Verdict.ANOMALY, Blocking.DNS, F.DNS_REFUSED)),
        ({"dns": dns(SITE_IP), "tcp": [tcp(failure=F.CONNECTION_REFUSED)]},
         (Verdict.ANOMALY, Blocking.TCP_IP, F.CONNECTION_REFUSED)),
        ({"dns": dns(SITE_IP), "tcp": [tcp()], "http": http(status=None, failure=F.EOF_ERROR)},
         (Verdict.ANOMALY, Blocking.HTTP_FAILURE, F.EOF_ERROR)),
        ({"dns": dns(SITE_IP), "tcp": [tcp()], "http": http()}, (Verdict.OK, None, None)),
        ({"dns": dns(failure=F.unknown_failure("no resolver configured"))},
         (Verdict.FAILURE, None, F.unknown_failure("no resolver configured"))),
    ],
)  # fmt: skip
def test_without_control_the_first_failure_names_the_candidate(
    kw: dict[str, Any], expected: tuple[Verdict, Blocking | None, str | None]
) -> None:
    assert outcome(**kw) == expected


def test_one_working_endpoint_is_a_working_tcp_step() -> None:
    got = outcome(dns=dns(SITE_IP, CDN_IP), tcp=[tcp(CDN_IP, F.GENERIC_TIMEOUT), tcp()],
                  http=http(), control=control())  # fmt: skip
    assert got == (Verdict.OK, None, None)


def test_comparison_helpers() -> None:
    assert body_proportion_match(71, 100) is True
    assert body_proportion_match(70, 100) is False
    assert body_proportion_match(100, 0) is None
    assert title_match("The Daily News", "the daily NEWS") is True  # "daily" is the only 5+ word
    assert title_match("Blocked Website", "The Daily News") is False
    assert title_match(None, "x") is None
    assert headers_match(["Date", "X-Cache-Id"], ["x-cache-id", "server"]) is True
    assert headers_match(["date", "x-filter"], ["date"]) is False
    assert headers_match([], ["date"]) is None
