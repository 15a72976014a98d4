"""The fleet run's summary: a table for people, a JSON file for comparing runs over time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _ms(latency: dict[str, Any]) -> str:
    return "/".join(
        "-" if latency[k] is None else f"{latency[k]:.0f}" for k in ("p50", "p95", "p99")
    )


def _lat(minutes: dict[str, Any]) -> str:
    if minutes["median"] is None:
        return "-"
    return f"{minutes['median']:.0f} min (max {minutes['max']:.0f})"


def _names(values: list[Any]) -> str:
    return ",".join(str(v) for v in values) or "-"


def format_summary(result: dict[str, Any]) -> str:
    lines = [f"Vantage fleet simulation  {result['started_at']}  ({result['machine']})"]
    scenario = result.get("scenario")
    if scenario:
        ingest = scenario["ingest"]
        lines += [
            "",
            f"Scenario: {scenario['agents']} agents, {scenario['days']} simulated days,"
            f" round {scenario['round_minutes']:g} min, {scenario['db']}, wall {scenario['wall_s']:.0f} s",
            f"  sustained ingest: {ingest['batches']:,} batches, {ingest['measurements']:,} measurements"
            f" in {ingest['elapsed_s']:.1f} s = {ingest['batches_per_s']:,.0f} batches/s,"
            f" {ingest['measurements_per_s']:,.0f} measurements/s"
            f"  (p50/p95/p99 {_ms(ingest['latency_ms'])} ms, {scenario['concurrency']} in flight)",
            f"  detection: {scenario['passes']} passes at simulated times,"
            f" {scenario['detect_s']:.1f} s in total",
            "",
            f"  {'event':<28} {'expected':<44} {'found':<44} {'first alert':<18} {'right pattern':<18} ok",
        ]
        for row in scenario["detection"]:
            exp, found = row["expected"], row["found"]
            expected = f"{exp['pattern']} {_names(exp['regions'])} AS{_names(exp['carriers'])} x{exp['episodes']}"
            got = f"{_names(found['patterns'])} {_names(found['regions'])} AS{_names(found['carriers'])} x{found['episodes']}"
            lines.append(
                f"  {row['event']:<28} {expected:<44} {got:<44}"
                f" {_lat(row['alert_latency_min']):<18} {_lat(row['right_pattern_latency_min']):<18}"
                f" {'yes' if row['correct'] else 'NO'}"
            )
        alarms = scenario["false_alarms"]
        lines.append(
            f"  false alarms: quiet week {len(alarms['quiet_week'])}, whole run {len(alarms['all'])}"
        )
        for alarm in alarms["all"][:10]:
            lines.append(f"    {alarm}")
        audit = scenario["audit"]
        lines += [
            f"  exactly once: {'yes' if audit['exactly_once'] else 'NO'}"
            f" ({audit['acknowledged']:,} acknowledged batches, {audit['stored_rows']:,} rows,"
            f" rollups {audit['rollup_rows']:,}); nothing lost: {'yes' if audit['nothing_lost'] else 'NO'}",
            f"  collector RSS: peak {scenario['rss']['peak_mb']} MB"
            f" (first {scenario['rss']['first_mb']}, last {scenario['rss']['last_mb']})",
        ]
        for fault in scenario["faults"]:
            details = ", ".join(f"{k} {v}" for k, v in fault.items() if k not in ("fault", "what"))
            lines.append(f"  fault: {fault['fault']}: {fault['what']}; {details}")
    capacity = result.get("capacity")
    if capacity:
        best = capacity["largest_fleet"]
        lines += [
            "",
            f"Capacity ({capacity['db']}, {capacity['step_seconds']:g} s per step, p99 budget"
            f" {capacity['p99_budget_ms']:g} ms): largest fleet at a 5-minute round ="
            f" {best:,} agents"
            if best
            else "Capacity: no step passed",
        ]
        for step in capacity["steps"]:
            lines.append(
                f"  {step['agents']:>8,} agents {step['offered_per_s']:>7.1f}/s offered"
                f" {step['achieved_per_s']:>7.1f}/s done  p50/p95/p99 {_ms(step['latency_ms'])} ms"
                f"  errors {step['errors']}  RSS {step['rss_peak_mb']} MB"
                f"  {'pass' if step['passed'] else 'FAIL'}"
            )
    burst = result.get("burst")
    if burst:
        lines.append(
            f"  burst: {burst['uploads']} concurrent uploads, {burst['acknowledged']} acknowledged,"
            f" {burst['errors']} errors, {burst['elapsed_s']} s, p50/p95/p99 {_ms(burst['latency_ms'])} ms,"
            f" RSS {burst['rss_before_mb']} -> peak {burst['rss_peak_mb']} -> {burst['rss_after_mb']} MB"
        )
    if "verdict" in result:
        lines += ["", f"All checks passed: {'yes' if result['verdict'] else 'NO'}"]
    return "\n".join(lines)


def write_json(result: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"fleet-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    return path
