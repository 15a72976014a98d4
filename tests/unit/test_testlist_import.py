"""CSV and plain-list import (protocol/listimport.py): scope rules, validation, dedupe, bad rows."""

from __future__ import annotations

import pytest

from protocol.errors import SchemaError
from protocol.listimport import ScopeRules, draft_json, entries_from_draft, import_lists
from protocol.verdicts import Scope

CITIZEN_LAB = """url,category_code,category_description,date_added,source,notes
https://www.bbc.com/persian/,NEWS,News Media,2014-04-15,citizenlab,
http://www.example.ir/,POLR,Political Criticism,2017-01-01,,
https://shop.domestic.test/,COMM,E-commerce,2020-02-02,,
not a url,NEWS,News Media,2014-04-15,,
ftp://files.example.com/,FILE,File-sharing,2014-04-15,,
https://www.bbc.com/persian/,NEWS,News Media,2014-04-15,duplicate,
HTTPS://WWW.BBC.COM/persian/,NEWS,News Media,2014-04-15,duplicate in other case,
https://too.many.test/,NEWS,News,2014-04-15,,,extra
"quoted, url",NEWS,News,2014-04-15,,
http://10.0.0.5/,HOST,Hosting,2021-01-01,,
"""


def rules(**kw: object) -> ScopeRules:
    return ScopeRules(
        domestic_domains=("domestic.test",),
        domestic_tlds=("ir",),
        domestic_networks=("10.0.0.0/8",),
        **kw,  # type: ignore[arg-type]
    )


def test_citizen_lab_csv_with_malformed_rows() -> None:
    result = import_lists([("ir.csv", CITIZEN_LAB)], rules())
    got = {e.url: (e.scope, e.category) for e in result.entries}
    assert got == {
        "https://www.bbc.com/persian/": (Scope.INTERNATIONAL, "NEWS"),
        "http://www.example.ir/": (Scope.DOMESTIC, "POLR"),
        "https://shop.domestic.test/": (Scope.DOMESTIC, "COMM"),
        "http://10.0.0.5/": (Scope.DOMESTIC, "HOST"),
    }
    assert result.duplicates == 2
    problems = {p.line: p.message for p in result.problems}
    assert set(problems) == {5, 6, 9, 10}
    assert "add http:// or https://" in problems[5]
    assert "ftp://" in problems[6]
    assert "has 7 fields, the header has 6" in problems[9]
    assert str(result.problems[0]).startswith("ir.csv:5: ")


def test_explicit_scope_and_tests_columns_win() -> None:
    text = (
        "url,category_code,scope,tests\n"
        "https://www.example.ir/,NEWS,international,web_connectivity;dns_consistency\n"
        "https://x.test/,NEWS,sideways,\n"
    )
    result = import_lists([("s.csv", text)], rules())
    assert result.entries[0].scope is Scope.INTERNATIONAL
    assert result.entries[0].tests == ("web_connectivity", "dns_consistency")
    assert [p.line for p in result.problems] == [3]
    assert "sideways" in result.problems[0].message


def test_plain_url_list_and_unknown_scope_without_default() -> None:
    text = "# comment\nhttps://a.world.test/\n\nhttps://b.domestic.test/x\nexample.com\n"
    result = import_lists([("plain.txt", text)], rules(default=None))
    assert [(e.url, e.scope) for e in result.entries] == [
        ("https://b.domestic.test/x", Scope.DOMESTIC)
    ]
    assert [
        (p.line, "cannot tell" in p.message or "add http" in p.message) for p in result.problems
    ] == [
        (2, True),
        (5, True),
    ]


def test_dedupe_across_files_keeps_first() -> None:
    result = import_lists(
        [("a.txt", "https://a.test/\n"), ("b.csv", "url,scope\nhttps://a.test/,domestic\n")],
        rules(),
    )
    assert len(result.entries) == 1 and result.entries[0].scope is Scope.INTERNATIONAL
    assert result.duplicates == 1


def test_draft_round_trip_and_damaged_draft() -> None:
    result = import_lists([("ir.csv", CITIZEN_LAB)], rules())
    assert entries_from_draft(draft_json(result.entries)) == result.entries
    with pytest.raises(SchemaError, match="not JSON"):
        entries_from_draft("{", "d.json")
    with pytest.raises(SchemaError, match=r"entries\[0\]"):
        entries_from_draft('{"type": "vantage-testlist-draft", "entries": [{"url": 1}]}')
