"""Host plumbing for the lab: network namespaces, veth links, processes inside them, and the sweep.

Every namespace the lab creates is named ``vlab-<pid>-<role>``: ``vlab-`` is the fixed prefix, ``<pid>``
the process that built it. Links are created with both ends already inside lab namespaces (``ip link
add A netns X type veth peer name B netns Y``), so the machine's own namespace never holds a lab
interface and deleting the namespaces deletes every link, address, route and iptables rule with them.
What can outlive a namespace is a process still running in it; :func:`sweep` kills those (found with
``ip netns pids``, by their ids) before deleting a namespace. A namespace whose builder is no longer
alive is a leftover of a killed run: :func:`sweep_leftovers` removes it at the next session start.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

PREFIX = "vlab-"
_NAME = re.compile(r"^vlab-(\d+)")


def available() -> tuple[bool, str]:
    """Can this machine run the lab? (root, iproute2, iptables, dnsmasq)"""
    if os.geteuid() != 0:
        return False, "the lab needs root (network namespaces, veth, iptables)"
    for tool, package in (
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("dnsmasq", "dnsmasq-base"),
    ):
        if shutil.which(tool) is None:
            return False, f"{tool} absent (Debian package {package})"
    return True, ""


def sh(*argv: str, check: bool = True, timeout: float = 20) -> str:
    """Run a command; a failure raises with the command and its stderr (never a silent half-lab)."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def in_ns(ns: str, *argv: str, check: bool = True, timeout: float = 20) -> str:
    return sh("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout)


def namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def lab_namespaces(run_prefix: str = PREFIX) -> list[str]:
    return [name for name in namespaces() if name.startswith(run_prefix)]


def pids_in(ns: str) -> list[int]:
    out = sh("ip", "netns", "pids", ns, check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_pids(pids: Sequence[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL what is still there after ``grace`` seconds: by id, one by one."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_namespace(ns: str) -> None:
    # Processes first: a namespace with a process in it stays alive after `ip netns del`.
    for _ in range(3):
        pids = pids_in(ns)
        if not pids:
            break
        kill_pids(pids)
    sh("ip", "netns", "del", ns, check=False)


def sweep(run_prefix: str) -> list[str]:
    """Remove every namespace (and its processes) whose name starts with ``run_prefix``."""
    found = lab_namespaces(run_prefix)
    for ns in found:
        remove_namespace(ns)
    return found


def stray_links() -> list[str]:
    """Lab-named interfaces in the machine's own namespace (never created; checked anyway)."""
    out = sh("ip", "-o", "link", "show", check=False)
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [name for name in names if name.startswith(PREFIX)]


def sweep_leftovers(*, include_own: bool = False) -> list[str]:
    """Remove lab namespaces whose builder process is gone: what a killed run left behind.

    A concurrently running lab (another pytest on this machine) has a live builder and is left alone.
    ``include_own`` (at session start, before this process built anything) also removes namespaces
    named after this process's id: a killed run that happened to have the same pid.
    """
    removed = []
    for ns in lab_namespaces():
        match = _NAME.match(ns)
        builder = int(match.group(1)) if match else None
        if builder is not None and _alive(builder) and not (include_own and builder == os.getpid()):
            continue
        remove_namespace(ns)
        removed.append(ns)
    for link in stray_links():
        sh("ip", "link", "del", link, check=False)
    return removed
