"""The verdict: OONI Web Connectivity's classification, as a pure function of the recorded steps.

Pure (no I/O), so the agent computes it when it measures and the collector can re-run it on any stored
measurement (:func:`classify_measurement`). The rules (METHODOLOGY.md, "Verdict"):

- DNS is *consistent* when probe and control resolved a common address, or addresses in a common
  AS, or both failed the same way (both NXDOMAIN), or the probe's TLS handshake proved a certificate
  valid for the name on the address it got (Censored Planet's order of checks).
- The probe fails where the control succeeds: at DNS → ``dns``; at TCP → ``tcp_ip``; at TLS or HTTP →
  ``http-failure``. Inconsistent DNS overrides these to ``dns``. Both fail → ``down`` (not censorship).
- Both fetched a page: not blocked if the status matches (ignored when the control got a 5xx) and
  any of body length (proportion > 0.7), uncommon header names, title words (5+ letters) match;
  otherwise ``http-diff`` (``dns`` when DNS was inconsistent).
- A blockpage fingerprint match makes the result ``confirmed``.
- Without a control, the first failing step names a *candidate* blocking type (an anomaly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from . import failures as F
from .fingerprints import Hit
from .messages import ControlResult, DnsResult, HttpResult, Measurement, TcpResult, TlsResult
from .verdicts import Blocking, Verdict

BODY_PROPORTION: Final = 0.7
TITLE_WORD_MIN: Final = 5

#: Header names too common to tell two servers apart (OONI's list, lowercase).
COMMON_HEADERS: Final = frozenset(
    {
        "date",
        "content-type",
        "server",
        "cache-control",
        "vary",
        "set-cookie",
        "location",
        "expires",
        "x-powered-by",
        "content-encoding",
        "last-modified",
        "accept-ranges",
        "pragma",
        "x-frame-options",
        "etag",
        "x-content-type-options",
        "age",
        "via",
        "p3p",
        "x-xss-protection",
        "content-language",
        "strict-transport-security",
        "link",
        "content-length",
        "connection",
        "transfer-encoding",
        "keep-alive",
    }
)


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    blocking: Blocking | None
    failure: str | None  # the first failure the probe saw, for quick filtering
    dns_consistent: bool | None = None  # None: no control to compare with


@dataclass(frozen=True, slots=True)
class HttpComparison:
    """Each check is None when it cannot be made (no control status, empty titles, ...)."""

    status_match: bool | None
    body_match: bool | None
    headers_match: bool | None
    title_match: bool | None

    @property
    def accessible(self) -> bool:
        return self.status_match is True and True in (
            self.body_match,
            self.headers_match,
            self.title_match,
        )


def body_proportion_match(probe: int | None, control: int | None) -> bool | None:
    if probe is None or control is None or control <= 0:
        return None
    if probe <= 0:
        return False
    return min(probe / control, control / probe) > BODY_PROPORTION


def title_match(probe: str | None, control: str | None) -> bool | None:
    """True when every word of 5+ characters appears in both titles (case-insensitive)."""
    if not probe or not control:
        return None
    probe_words = {w.lower() for w in probe.split() if len(w) >= TITLE_WORD_MIN}
    control_words = {w.lower() for w in control.split() if len(w) >= TITLE_WORD_MIN}
    return probe_words == control_words


def headers_match(probe: Sequence[str], control: Sequence[str]) -> bool | None:
    """True when both responses carry the same uncommon header names."""
    if not probe or not control:
        return None
    uncommon_probe = {name.lower() for name in probe} - COMMON_HEADERS
    uncommon_control = {name.lower() for name in control} - COMMON_HEADERS
    return uncommon_probe == uncommon_control


def compare_http(http: HttpResult, control: ControlResult) -> HttpComparison:
    status_match = None
    if control.http_status is not None and control.http_status // 100 != 5:
        status_match = http.status == control.http_status
    return HttpComparison(
        status_match=status_match,
        body_match=body_proportion_match(http.body_length, control.http_body_length),
        headers_match=headers_match(http.header_names, control.http_header_names),
        title_match=title_match(http.title, control.http_title),
    )


def dns_consistent(dns: DnsResult, control: ControlResult, tls: TlsResult | None = None) -> bool:
    if control.dns_failure is not None:
        return dns.failure == control.dns_failure
    if dns.failure is not None and dns.failure != F.DNS_BOGON:
        return False
    probe, ctl = set(dns.answers), set(control.dns_answers)
    if probe & ctl:
        return True
    if dns.failure == F.DNS_BOGON:
        return False  # a bogon is never explained by a shared AS or a certificate
    asns = dict(control.asns)
    probe_asns = {asns[ip] for ip in probe if asns.get(ip)}
    control_asns = {asns[ip] for ip in ctl if asns.get(ip)}
    if probe_asns & control_asns:
        return True
    # The address we were given served a certificate valid for the name: not a DNS lie.
    return tls is not None and tls.success and tls.ip in probe


def first_failure(
    dns: DnsResult | None,
    tcp: Sequence[TcpResult],
    tls: TlsResult | None,
    http: HttpResult | None,
) -> str | None:
    if dns is not None and dns.failure is not None:
        return dns.failure
    if tcp and not any(item.success for item in tcp):
        return tcp[0].failure
    if tls is not None and tls.failure is not None:
        return tls.failure
    if http is not None:
        return http.failure
    return None


def _local(
    dns: DnsResult | None,
    tcp: Sequence[TcpResult],
    tls: TlsResult | None,
    http: HttpResult | None,
    failure: str | None,
) -> Classification:
    if dns is not None and dns.failure is not None:
        return Classification(Verdict.ANOMALY, Blocking.DNS, failure)
    if tcp and not any(item.success for item in tcp):
        return Classification(Verdict.ANOMALY, Blocking.TCP_IP, failure)
    if failure is not None:  # TLS or HTTP
        return Classification(Verdict.ANOMALY, Blocking.HTTP_FAILURE, failure)
    return Classification(Verdict.OK, None, None)


def classify(
    *,
    dns: DnsResult | None,
    tcp: Sequence[TcpResult] = (),
    tls: TlsResult | None = None,
    http: HttpResult | None = None,
    control: ControlResult | None = None,
    fingerprints: Sequence[Hit] = (),
) -> Classification:
    failure = first_failure(dns, tcp, tls, http)
    consistent = None if control is None or dns is None else dns_consistent(dns, control, tls)
    if fingerprints:
        where = (
            Blocking.DNS if any(h.location == "dns" for h in fingerprints) else Blocking.HTTP_DIFF
        )
        return Classification(Verdict.CONFIRMED, where, failure, consistent)
    if failure is not None and failure.startswith(F.UNKNOWN_PREFIX) and dns and dns.failure:
        return Classification(
            Verdict.FAILURE, None, failure
        )  # our resolver set-up, not the network
    if control is None or dns is None:
        return _local(dns, tcp, tls, http, failure)

    def blocked(kind: Blocking) -> Classification:
        return Classification(
            Verdict.ANOMALY, kind if consistent else Blocking.DNS, failure, consistent
        )

    down = Classification(Verdict.FAILURE, Blocking.DOWN, failure, consistent)
    if dns.failure is not None:
        return down if control.dns_failure is not None else blocked(Blocking.DNS)
    if tcp and not any(item.success for item in tcp):
        control_reached = any(item.success for item in control.tcp) or control.http_success
        return blocked(Blocking.TCP_IP) if control_reached else down
    if failure is not None:
        return blocked(Blocking.HTTP_FAILURE) if control.http_success else down
    if http is None or not control.http_success:
        return Classification(Verdict.OK, None, None, consistent)  # we reached it
    if compare_http(http, control).accessible:
        return Classification(Verdict.OK, None, None, consistent)
    return blocked(Blocking.HTTP_DIFF)


def classify_measurement(m: Measurement) -> Classification:
    """Re-run the classification on a stored measurement (what the collector does)."""
    return classify(
        dns=m.dns,
        tcp=m.tcp,
        tls=m.tls,
        http=m.http,
        control=m.control,
        fingerprints=m.fingerprints,
    )
