"""A throwaway PostgreSQL server for tests: initdb in a temp dir, 127.0.0.1 on a free port, torn down.

Uses the Debian ``postgresql`` package's binaries (``initdb``/``pg_ctl`` on PATH or under
/usr/lib/postgresql/*/bin). PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user (``runuser``). fsync is off: these tests check correctness, not durability.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "vantage"


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def available() -> bool:
    if not all(find_bin(n) for n in ("initdb", "pg_ctl", "createdb")):
        return False
    return os.geteuid() != 0 or (shutil.which("runuser") is not None and _has_user("postgres"))


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vantage-pg-"))
        self.port = _free_port()
        self._counter = 0

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        data = self.root / "data"
        self._run(
            str(find_bin("initdb")),
            "-D", str(data),
            "-U", USER,
            "--auth=trust",
            "--locale=C.UTF-8",
            "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(find_bin("pg_ctl")), "-D", str(data), "-o", options, "-l",
            str(self.root / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        self._counter += 1
        name = f"test_{os.getpid()}_{self._counter}"
        self._run(
            str(find_bin("createdb")), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name
        )
        return self.dsn(name)

    def stop(self) -> None:
        try:
            self._run(
                str(find_bin("pg_ctl")), "-D", str(self.root / "data"), "-m", "immediate", "stop"
            )
        except subprocess.CalledProcessError:
            pass  # never started, or already gone; the directory goes either way
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
