"""Target lists: Citizen Lab's CSV columns plus ``scope`` (domestic | international).

Columns: ``url,category_code,category_description,date_added,source,notes,scope``; only ``url`` and
``scope`` are required. Every bad row is reported with its line number, all at once.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from protocol import LocalProtocolError, Target

from .errors import ConfigError

MAX_TARGETS = 5000


def parse_targets(text: str, source: str = "<targets>") -> list[Target]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise ConfigError(f"{source}: empty target list")
    columns = [name.strip() for name in reader.fieldnames]
    missing = {"url", "scope"} - set(columns)
    if missing:
        raise ConfigError(
            f"{source}: missing column(s) {', '.join(sorted(missing))};"
            " expected url,category_code,...,scope"
        )
    targets: list[Target] = []
    problems: list[str] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        url = clean.get("url", "")
        if not url or url.startswith("#"):
            continue
        try:
            target = Target(url, clean.get("scope", ""), clean.get("category_code") or "MISC")  # type: ignore[arg-type]  # validated by Target
        except LocalProtocolError as exc:
            problems.append(f"{source}:{line}: {exc}")
            continue
        if target.url in seen:
            continue
        seen.add(target.url)
        targets.append(target)
    if problems:
        raise ConfigError("bad target list:\n  " + "\n  ".join(problems))
    if not targets:
        raise ConfigError(f"{source}: no targets")
    if len(targets) > MAX_TARGETS:
        raise ConfigError(f"{source}: more than {MAX_TARGETS} targets")
    return targets


def load_targets(path: Path) -> list[Target]:
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read target list {path}: {exc}") from exc
    try:
        return parse_targets(text, str(path))
    except csv.Error as exc:
        raise ConfigError(f"{path}: not a valid CSV target list: {exc}") from exc
