"""The lab's networks: subscribers behind a censoring ISP router, and the web beyond it.

::

    vlab-<run>-c0 .. cN  (one namespace per subscriber network: province × carrier × network type;
         │                 several agents can share one)
         │ cl0..clN      198.18.(100+i).0/24
    vlab-<run>-censor    the ISP's router and censor: forwards, filters (iptables chain SCENARIO in
         │               filter/FORWARD and nat/PREROUTING), intercepts all subscriber DNS to its own
         │               resolver (dnsmasq, 198.18.0.53), and runs its blockpage hosts (198.18.9.9/.10)
         ├── dom   198.18.1.0/24   domestic web hosts (HTTP :80, HTTPS :443, one address per site)
         ├── intl  198.19.1.0/24   international web hosts (everything in 198.19.0.0/16 is abroad)
         └── core  198.18.200.0/24 the unfiltered side: the collector (with its control helper,
                                   198.18.200.10:8080) and the honest name server (198.18.200.53)

Addresses come only from 198.18.0.0/15, names only from ``.test``; no namespace has a default route,
so nothing can leave the lab. The censor filters only what enters on subscriber interfaces, so the
collector's control helper (in ``core``) always sees the real sites.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import trustme

import labhost
from labhost import in_ns, sh

LAB_PREFIX = "198.18.0.0/15"
ABROAD = "198.19.0.0/16"
ISP_RESOLVER = "198.18.0.53"
BLOCKPAGE_IP = "198.18.9.9"
REDIRECT_IP = "198.18.9.10"
NOTICE_HOST = "notice.censor.test"
COLLECTOR_IP = "198.18.200.10"
COLLECTOR_PORT = 8080
COLLECTOR_URL = f"http://{COLLECTOR_IP}:{COLLECTOR_PORT}"
HONEST_DNS = "198.18.200.53"
CHAIN = "SCENARIO"
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ClientNet:
    """A subscriber network: one province, one carrier, one kind of access."""

    key: str
    region: str
    asn: int
    carrier: str
    network_type: str
    country: str = "XA"


@dataclass(frozen=True)
class WebSite:
    host: str
    ip: str

    @property
    def scope(self) -> str:
        return "international" if self.ip.startswith("198.19.") else "domestic"

    def url(self, scheme: str = "https") -> str:
        return f"{scheme}://{self.host}/"


CLIENTS = (
    ClientNet("north-mobile", "XA-NORTH", 64500, "MobiNet", "mobile"),
    ClientNet("north-fixed", "XA-NORTH", 64501, "FiberLine", "wired"),
    ClientNet("east-mobile", "XA-EAST", 64500, "MobiNet", "mobile"),
    ClientNet("south-mobile", "XA-SOUTH", 64502, "CellCo", "mobile"),
    ClientNet("west-mobile", "XA-WEST", 64502, "CellCo", "mobile"),
    ClientNet("central-mobile", "XA-CENTRAL", 64500, "MobiNet", "mobile"),
)

_DOMESTIC = ("news", "bank", "gov", "shop")
_ABROAD = ("www", "mail", "social", "video", "news", "chat", "forum", "search", "blog", "wiki")
_ABROAD += ("gone", "maps")
SITES = tuple(
    WebSite(f"{name}.domestic.test", f"198.18.1.{10 + i}") for i, name in enumerate(_DOMESTIC)
) + tuple(WebSite(f"{name}.world.test", f"198.19.1.{10 + i}") for i, name in enumerate(_ABROAD))


def site(host: str) -> WebSite:
    for candidate in SITES:
        if candidate.host == host:
            return candidate
    raise KeyError(host)


def _page(host: str) -> dict[str, Any]:
    # Real sites differ from a blockpage in title, length and an uncommon header, as real sites do.
    words = " ".join(f"{host} article {n} with enough text to look like a page." for n in range(12))
    return {
        "title": f"Welcome to {host}",
        "body": words,
        "headers": {"X-Site-Name": host},
    }


class LabProcess:
    """A long-running process inside a namespace, its output in a log file."""

    def __init__(self, ns: str, argv: list[str], log: Path, ready: str = "ready") -> None:
        self.log, self.ready = log, ready
        self._out: IO[bytes] = log.open("wb")
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=str(HERE.parent.parent),
        )

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until the process has logged its ``ready`` text (it has bound its sockets)."""
        text = self.ready
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.log.name}: no {text!r}; log:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(3)
        self._out.close()


class Lab:
    """Build with ``with Lab(workdir) as lab:``; everything is torn down on exit, even on failure."""

    def __init__(
        self,
        workdir: Path,
        clients: tuple[ClientNet, ...] = CLIENTS,
        run_id: str | None = None,
        *,
        with_collector: bool = True,
    ) -> None:
        self.workdir = workdir
        self.clients = clients
        self.run_prefix = f"{labhost.PREFIX}{run_id or os.getpid()}-"
        self.with_collector = with_collector
        self.processes: dict[str, LabProcess] = {}
        self.ca = trustme.CA()
        self.ca_file = workdir / "lab-ca.pem"
        self.db_path = workdir / "collector.db"

    # -- names ------------------------------------------------------------------------------
    def ns(self, role: str) -> str:
        return self.run_prefix + role

    def client_ns(self, client: ClientNet) -> str:
        return self.ns(f"c{self.clients.index(client)}")

    def client_iface(self, client: ClientNet) -> str:
        """The censor's interface towards this subscriber network."""
        return f"cl{self.clients.index(client)}"

    def client(self, key: str) -> ClientNet:
        return next(c for c in self.clients if c.key == key)

    # -- life cycle ---------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for process in self.processes.values():
            process.stop()
        self.processes.clear()
        labhost.sweep(self.run_prefix)

    def build(self) -> None:
        roles = ["censor", "dom", "intl", "core"] + [f"c{i}" for i in range(len(self.clients))]
        for role in roles:
            sh("ip", "netns", "add", self.ns(role))
            sh("ip", "-n", self.ns(role), "link", "set", "lo", "up")
        censor = self.ns("censor")
        in_ns(censor, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for address in (ISP_RESOLVER, BLOCKPAGE_IP, REDIRECT_IP):
            sh("ip", "-n", censor, "addr", "add", f"{address}/32", "dev", "lo")
        for i, client in enumerate(self.clients):
            self._link(self.client_iface(client), self.client_ns(client), f"198.18.{100 + i}")
        self._link(
            "dom", self.ns("dom"), "198.18.1", [s.ip for s in SITES if s.scope == "domestic"]
        )
        self._link(
            "intl", self.ns("intl"), "198.19.1", [s.ip for s in SITES if s.scope != "domestic"]
        )
        self._link("core", self.ns("core"), "198.18.200", [COLLECTOR_IP, HONEST_DNS])
        self._firewall()
        self._certificates()
        self._start_servers()

    def _link(self, iface: str, ns: str, net: str, extra: list[str] | tuple[str, ...] = ()) -> None:
        """A veth from the censor (``iface``, ``net``.1) to ``ns`` (eth0, ``net``.2 and ``extra``)."""
        censor = self.ns("censor")
        sh("ip", "link", "add", iface, "netns", censor, "type", "veth", "peer", "eth0", "netns", ns)
        sh("ip", "-n", censor, "addr", "add", f"{net}.1/24", "dev", iface)
        for address in (f"{net}.2", *extra):
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", censor, "link", "set", iface, "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        # Only the lab's own range, through the censor: no default route, nothing leaves the lab.
        sh("ip", "-n", ns, "route", "add", LAB_PREFIX, "via", f"{net}.1")

    def _firewall(self) -> None:
        censor = self.ns("censor")
        for ns, table, hook in (
            (censor, "filter", "FORWARD"),
            (censor, "nat", "PREROUTING"),
            (self.ns("dom"), "filter", "INPUT"),
            (self.ns("intl"), "filter", "INPUT"),
        ):
            in_ns(ns, "iptables", "-t", table, "-N", CHAIN)
            in_ns(ns, "iptables", "-t", table, "-A", hook, "-j", CHAIN)
        # Every subscriber's DNS goes to the ISP resolver, whatever server the device asked.
        for proto in ("udp", "tcp"):
            in_ns(censor, "iptables", "-t", "nat", "-I", "PREROUTING", "-i", "cl+", "-p", proto,
                  "--dport", "53", "-j", "DNAT", "--to-destination", f"{ISP_RESOLVER}:53")  # fmt: skip

    def _certificates(self) -> None:
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert = self.ca.issue_cert(*(s.host for s in SITES))
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.workdir / "sites.pem"))

    def _spawn(self, name: str, role: str, argv: list[str], ready: str = "ready") -> LabProcess:
        process = LabProcess(self.ns(role), argv, self.workdir / f"{name}.log", ready)
        self.processes[name] = process
        return process

    def _labserve(self, name: str, role: str, spec: dict[str, Any]) -> LabProcess:
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(spec))
        return self._spawn(name, role, [sys.executable, str(HERE / "labserve.py"), str(path)])

    def _dnsmasq(self, name: str, role: str, listen: str, options: list[str]) -> LabProcess:
        argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file="]
        argv += ["--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={listen}"]
        argv += ["--log-facility=-", "--cache-size=0", "--no-negcache", *options]
        return self._spawn(name, role, argv, ready="started")

    def _start_servers(self) -> None:
        pem = str(self.workdir / "sites.pem")
        waiting = [
            self._labserve(
                f"web-{role}",
                role,
                {
                    "kind": "web",
                    "cert_pem": pem,
                    "sites": {s.host: _page(s.host) for s in SITES if (s.scope == scope)},
                },
            )
            for role, scope in (("dom", "domestic"), ("intl", "international"))
        ]
        waiting.append(
            self._labserve(
                "censor-web",
                "censor",
                {
                    "kind": "censor",
                    "notice_host": NOTICE_HOST,
                    "listen": [[BLOCKPAGE_IP, 80, "blockpage"], [REDIRECT_IP, 80, "redirect"]],
                },
            )
        )
        honest = [f"--host-record={s.host},{s.ip}" for s in SITES]
        waiting.append(
            self._dnsmasq("dnsmasq-honest", "core", HONEST_DNS, ["--local=/test/", *honest])
        )
        waiting.append(self.start_isp_resolver({}))
        if self.with_collector:
            waiting.append(self._start_collector())
        for process in waiting:
            process.wait_ready()

    def start_isp_resolver(self, overrides: dict[str, str | None]) -> LabProcess:
        """(Re)start the ISP's resolver; ``overrides`` maps a name to the censor's answer (None:
        NXDOMAIN). Everything else is forwarded to the honest name server."""
        old = self.processes.pop("dnsmasq-isp", None)
        if old is not None:
            old.stop()
        lies = [f"--address=/{name}/{ip or ''}" for name, ip in overrides.items()]
        lies.append(f"--address=/{NOTICE_HOST}/{BLOCKPAGE_IP}")
        process = self._dnsmasq(
            "dnsmasq-isp", "censor", ISP_RESOLVER, [f"--server=/test/{HONEST_DNS}", *lies]
        )
        if old is not None:
            process.wait_ready()
        return process

    def _start_collector(self) -> LabProcess:
        argv = [sys.executable, "-m", "vantagepoint", "collector", "serve"]
        argv += ["--db", str(self.db_path), "--key", str(self.workdir / "collector.key")]
        argv += ["--host", COLLECTOR_IP, "--port", str(COLLECTOR_PORT)]
        argv += ["--rate-per-agent", "0", "--rate-per-address", "0", "--control-lab"]
        argv += ["--control-resolver", HONEST_DNS, "--control-ca-file", str(self.ca_file)]
        return self._spawn("collector", "core", argv, ready="listening on")

    # -- the censor's rule book ------------------------------------------------------------
    def iptables(self, role: str, table: str, *rule: str) -> None:
        in_ns(self.ns(role), "iptables", "-t", table, "-A", CHAIN, *rule)

    def flush_rules(self) -> None:
        for role, table in (("censor", "filter"), ("censor", "nat"), ("dom", "filter")):
            in_ns(self.ns(role), "iptables", "-t", table, "-F", CHAIN)
        in_ns(self.ns("intl"), "iptables", "-t", "filter", "-F", CHAIN)

    def rules(self, role: str, table: str = "filter") -> str:
        return in_ns(self.ns(role), "iptables", "-t", table, "-S", CHAIN)

    # -- looking at the collector --------------------------------------------------------------
    def db_rows(self, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as db:
            db.row_factory = sqlite3.Row
            return list(db.execute(query, params))

    def stored(self, uids: Sequence[str], columns: str) -> dict[str, sqlite3.Row]:
        """The collector's rows for these measurement uids, by uid (absent: not received)."""
        marks = ",".join("?" * len(uids))
        query = f"SELECT uid, {columns} FROM measurements WHERE uid IN ({marks})"
        return {row["uid"]: row for row in self.db_rows(query, tuple(uids))}

    def api_get(self, path: str) -> Any:
        """GET a collector endpoint from inside the lab (the host itself has no route to it)."""
        code = (
            "import json,sys,urllib.request;"
            "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
        )
        out = in_ns(self.ns("core"), sys.executable, "-c", code, COLLECTOR_URL + path)
        return json.loads(out)

    def vantage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a ``vantage`` command next to the collector (operator commands, detection)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.ns("core"), sys.executable, "-m", "vantagepoint", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
