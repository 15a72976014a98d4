"""``vantage query`` against a real collector: tables, --json, --csv, exports, and exit codes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from pathlib import Path

from analysis_support import Stream, at_hour

from collector.app import CollectorConfig
from collector.backends import open_storage
from collector.disruptions import detect
from collector.server import start_collector

CUT = ("XA-01", 64500)


async def vantage(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vantagepoint",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_query_commands_print_tables_json_csv_and_exports(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    storage = open_storage(db, migrate=True)
    await storage.open()
    stream = Stream(storage)
    await stream.register()
    for h in range(24):
        await stream.hour(
            h,
            lambda net, target, _i, h=h: (
                "cut" if net == CUT and h >= 20 and target.scope == "international" else "ok"
            ),
            [CUT, ("XA-01", 64501), ("XA-02", 64500)],
        )
    await detect(storage, at_hour(22))
    await storage.close()
    running = await start_collector(CollectorConfig(db, detect_interval=0))
    url = running.url
    try:
        since = at_hour(0).strftime("%Y-%m-%dT%H:%MZ")
        code, out, err = await vantage(
            "query",
            "aggregate",
            "--collector",
            url,
            "--by",
            "region,carrier,scope",
            "--since",
            since,
        )
        assert code == 0, err
        header, rule, *rows = out.splitlines()
        assert header.split()[:4] == ["region", "asn", "carrier", "scope"] and set(rule) <= {
            "-",
            " ",
        }
        assert len(rows) == 6  # 3 networks x 2 scopes

        code, out, _ = await vantage(
            "query", "disruptions", "--collector", url, "--active", "--json"
        )
        (item,) = json.loads(out)["disruptions"]
        assert (item["pattern"], item["region"], item["asn"]) == ("international_cut", *CUT)

        code, out, _ = await vantage(
            "query",
            "timeseries",
            "--collector",
            url,
            "--region",
            "XA-01",
            "--asn",
            "64500",
            "--since",
            since,
            "--until",
            at_hour(24).strftime("%Y-%m-%dT%H:%MZ"),
            "--csv",
        )
        series = list(csv.DictReader(io.StringIO(out)))
        assert len(series) == 24
        assert float(series[21]["international_ratio"]) == 0.0
        assert float(series[19]["international_ratio"]) > 0.8

        code, out, _ = await vantage(
            "query", "measurements", "--collector", url, "--limit", "3", "--region", "XA-02"
        )
        assert code == 0 and "more: --cursor" in out and out.count("XA-02") == 3

        target = tmp_path / "export.jsonl"
        code, _, err = await vantage(
            "query", "export", "--collector", url, "--region", "XA-02", "--out", str(target)
        )
        assert code == 0, err
        lines = [json.loads(line) for line in target.read_text().splitlines()]
        assert sum(line["type"] == "measurement" for line in lines) == 24 * 3 * 4 * 3

        code, _, err = await vantage("query", "disruptions", "--collector", url, "--asn", "ASX")
        assert code == 2 and "asn" in err
    finally:
        await running.stop()
    code, _, err = await vantage("query", "disruptions", "--collector", url)
    assert code == 1 and "cannot reach" in err
