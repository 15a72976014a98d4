"""The ``vantage`` command: one entry point for the agent, the collector and the demo.

This is the one place allowed to know both sides; it imports each lazily, so ``vantage agent ...``
never loads the collector.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vantagepoint")
except PackageNotFoundError:
    __version__ = "0.0.0+source"

EPILOG = """examples:
  vantage demo                                   collector + 3 agents on loopback, no internet needed
  vantage collector serve --db collector.db      run a collector
  vantage agent init --collector URL --country IR --region IR-07 --asn 44244 --carrier Irancell
  vantage agent once --targets list.csv          measure once and upload
  vantage operator keygen --out ops.key          an operator key; then `vantage testlist --help`
  vantage query disruptions --collector URL --active   named disruptions (researchers)

exit codes: 0 ok, 1 error, 2 bad config or input, 3 measured but not uploaded (kept), 130 interrupted
"""


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vantage",
        description="Vantage: measure internet censorship and shutdowns, by province and carrier.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vantage {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from agent.cli import add_commands as add_agent_commands

    add_agent_commands(subparsers)
    # The collector's commands register only when asked for (or for top-level help), so that the
    # agent's install never imports server code.
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first in (None, "collector", "demo"):
        from collector.cli import add_commands as add_collector_commands

        add_collector_commands(subparsers)
    if first in (None, "operator", "testlist"):
        from collector.operator_cli import add_commands as add_operator_commands
        from collector.testlist_cli import add_commands as add_testlist_commands

        add_operator_commands(subparsers)
        add_testlist_commands(subparsers)
    if first in (None, "query"):
        from collector.query_cli import add_commands as add_query_commands

        add_query_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from protocol import VantageError

    args_list = sys.argv[1:] if argv is None else argv
    args = build_parser(args_list).parse_args(args_list)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except VantageError as exc:
        print(f"vantage: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    except OSError as exc:  # a full disk, a read-only or unreadable path: say which, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"vantage: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
