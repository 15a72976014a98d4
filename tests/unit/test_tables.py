"""protocol.tables.render_table: aligned plain-text columns for both CLIs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.tables import render_table

CELL = st.text(alphabet="abcxyz0123456789._-", max_size=12)


def test_a_small_table() -> None:
    table = render_table(["target", "verdict"], [["example.org", "ok"], ["a.ir", "anomaly"]])
    assert table.splitlines() == [
        "target       verdict",
        "-----------  -------",
        "example.org  ok",
        "a.ir         anomaly",
    ]


def test_cells_are_stringified() -> None:
    assert render_table(["n", "x"], [[1, None], [2.5, True]]).splitlines() == [
        "n    x",
        "---  ----",
        "1    None",
        "2.5  True",
    ]


def test_headers_only() -> None:
    assert render_table(["a", "bb"], []) == "a  bb\n-  --"


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda n: st.tuples(
            st.lists(CELL.filter(bool), min_size=n, max_size=n),
            st.lists(st.lists(CELL, min_size=n, max_size=n), max_size=6),
        )
    )
)
def test_columns_line_up(table: tuple[list[str], list[list[str]]]) -> None:
    headers, rows = table
    lines = render_table(headers, rows).split("\n")
    assert len(lines) == len(rows) + 2
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    starts = [sum(widths[:i]) + 2 * i for i in range(len(widths))]
    assert lines[1] == "  ".join("-" * w for w in widths)
    for line, row in zip([lines[0], *lines[2:]], [headers, *rows], strict=True):
        assert line == line.rstrip()
        for start, cell in zip(starts, row, strict=True):
            assert line[start : start + len(cell)] == cell
            assert start == 0 or line[start - 2 : start] in ("  ", "")
