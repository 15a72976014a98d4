"""Blockpage fingerprints: the matcher, the built-in set, and importing OONI's CSV format."""

from __future__ import annotations

import pytest

from protocol.fingerprints import (
    Fingerprint,
    FingerprintError,
    FingerprintSet,
    builtin_fingerprints,
    parse_fingerprints_csv,
)

HEADER = "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes\n"


def names(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [hit.name for hit in hits]


def test_builtin_set_knows_iran() -> None:
    fps = builtin_fingerprints()
    assert names(fps.match_dns(["198.51.100.1", "10.10.34.35"])) == ["dns_ir_10_10_34_35"]
    assert names(fps.match_dns(["00d0:0000::0011"])) == ["dns_ir_d0_11"]  # compared canonically
    assert fps.match_dns(["10.10.34.37"]) == []
    page = b'<html><iframe src="http://10.10.34.34?type=Invalid Site&policy=MainPolicy"></iframe>'
    assert names(fps.match_http(page, {})) == ["ir_iframe_10_10"]
    assert names(fps.match_http(b"see http://peyvandha.ir/1-2.htm", {})) == ["ir_peyvandha"]
    assert names(fps.match_http(b"<a href='https://internet.ir/1-2'>", {})) == ["ir_internet_ir"]
    assert fps.match_http(b"<title>An ordinary page about peyvandha</title>", {}) == []


@pytest.mark.parametrize(
    ("pattern_type", "value", "matches"),
    [
        ("full", "Protected by WireFilter", True),
        ("full", "Protected by WireFilter 8", False),
        ("prefix", "Protected by WireFilter 8", True),
        ("prefix", "Not Protected by WireFilter", False),
        ("contains", "Not Protected by WireFilter", True),
    ],
)
def test_header_patterns(pattern_type: str, value: str, matches: bool) -> None:
    fp = Fingerprint("ae_wirefilter", "header.Server", pattern_type, "Protected by WireFilter")
    found = FingerprintSet([fp]).match_http(b"", [("Content-Type", "text/html"), ("server", value)])
    assert bool(found) is matches
    if found:
        assert (found[0].name, found[0].location) == ("ae_wirefilter", "header.server")


def test_csv_import_loads_good_rows_and_reports_each_bad_row_with_its_line() -> None:
    text = HEADER + "\n".join(
        [
            "dns_xa_sinkhole,isp,,dns,full,198.18.9.9,9,XA,lab,,",  # line 2: good
            "no_pattern,isp,,body,contains,,5,,,,",  # line 3: empty pattern
            "bad_type,isp,,body,regex,blocked,5,,,,",  # line 4: unknown pattern type
            "bad_location,isp,,cookie,full,x,5,,,,",  # line 5: unknown location
            'multi_line,nat,,body,contains,"Access',  # lines 6-7: a quoted pattern over two lines
            'denied",10,XA;XB,lab,,"a note, with a comma"',
            "too_many,isp,,body,contains,x,5,,,,,extra",  # line 8: an extra field
            "too_few,isp,,body,contains",  # line 9: missing fields
            "bad_conf,isp,,body,contains,x,high,,,,",  # line 10
            "bad_country,isp,,body,contains,x,5,Iran,,,",  # line 11
            "dns_xa_sinkhole,isp,,dns,full,198.18.9.9,9,XA,lab,,",  # line 12: duplicate of 2
            "hdr_ok,prod,,header.X-Filter,prefix,Blocked by,8,,vendor,,",  # line 13: good
        ]
    )
    fps, problems = parse_fingerprints_csv(text)
    assert sorted(fp.name for fp in fps.fingerprints) == ["dns_xa_sinkhole", "hdr_ok", "multi_line"]
    assert [(p.line, p.message.split()[0]) for p in problems] == [
        (3, "pattern"),
        (4, "pattern_type"),
        (5, "location_found"),
        (8, "has"),
        (9, "has"),
        (10, "confidence_no_fp"),
        (11, "expected_countries"),
        (12, "duplicates"),
    ]
    assert "more fields" in problems[3].message and "fewer fields" in problems[4].message
    assert str(problems[0]) == "line 3: pattern is empty"
    multi = next(fp for fp in fps.fingerprints if fp.name == "multi_line")
    assert multi.pattern == "Access\ndenied" and multi.expected_countries == ("XA", "XB")
    assert names(fps.match_dns(["198.18.9.9"])) == ["dns_xa_sinkhole"]


def test_csv_without_required_columns_loads_nothing() -> None:
    fps, problems = parse_fingerprints_csv("name,pattern\nx,y\n")
    assert len(fps) == 0
    assert [(p.line, p.message) for p in problems] == [
        (1, "header lacks column(s): location_found, pattern_type")
    ]


def test_invalid_fingerprint_cannot_be_built() -> None:
    with pytest.raises(FingerprintError):
        Fingerprint("x", "header.", "full", "y")
    with pytest.raises(FingerprintError):
        Fingerprint("has space", "body", "full", "y")
