"""What one round of web measurements costs the volunteer's device: CPU time and peak memory.

Runs, in the same invocation and against the same loopback servers (DNS on UDP, HTTPS with a trustme
certificate, in their own process so they are not counted):

- ``agent``: Vantage's engine (``agent.web_connectivity.measure_targets``) on N https targets: DNS A
  and AAAA, TCP connect, TLS handshake, HTTP GET with body hash and title; no control helper;
- ``baseline``: a raw asyncio + ssl client doing the same I/O per target (two DNS queries over UDP, a
  TCP connect, a TLS handshake, then a TLS connection carrying one HTTP/1.1 GET read to the end).

Each client runs in a fresh process; we report its whole-process CPU (imports included), the CPU
of the measuring phase alone, and its peak RSS, then the agent/baseline ratios.

    .venv/bin/python bench/agent_cost.py --targets 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bench.test"


# --- servers (own process) ------------------------------------------------------------------------


async def serve(targets: int) -> None:
    import trustme

    from collector.labnet import LabDns, LabWeb, Site, Zone

    ca = trustme.CA()
    workdir = Path(tempfile.mkdtemp(prefix="vantage-bench-"))
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(f"*.{DOMAIN}").configure_cert(context)
    names = [f"t{i}.{DOMAIN}" for i in range(targets)]
    body = "A simulated news page. " * 200  # ~4.6 kB, a small real page
    web = await LabWeb({n: Site(f"Site {n}", body) for n in names}, ssl_context=context).start()
    dns = await LabDns(Zone({n: ["127.0.0.1"] for n in names})).start()
    print(
        json.dumps({"dns_port": dns.port, "web_port": web.port, "ca_file": str(ca_file)}),
        flush=True,
    )
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent ends


# --- the baseline client: asyncio + ssl, nothing else ---------------------------------------------


def dns_query(name: str, qtype: int) -> tuple[int, bytes]:
    qid = random.getrandbits(16)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return qid, struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack(
        "!HH", qtype, 1
    )


def first_address(response: bytes, qtype: int) -> str | None:
    """The first A/AAAA in a response (enough for the baseline; no compression beyond pointers)."""
    ancount = struct.unpack("!H", response[6:8])[0]
    pos = 12
    while response[pos] != 0:  # skip the question name
        pos += response[pos] + 1
    pos += 5
    for _ in range(ancount):
        pos += 2 if response[pos] & 0xC0 == 0xC0 else len(response[pos:].split(b"\0", 1)[0]) + 1
        rtype, _, _, length = struct.unpack("!HHIH", response[pos : pos + 10])
        pos += 10
        if rtype == qtype:
            family = socket.AF_INET if qtype == 1 else socket.AF_INET6
            return socket.inet_ntop(family, response[pos : pos + length])
        pos += length
    return None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


async def resolve(name: str, qtype: int, port: int) -> str | None:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Udp, remote_addr=("127.0.0.1", port))
    try:
        _, query = dns_query(name, qtype)
        transport.sendto(query)
        return first_address(await asyncio.wait_for(protocol.answer, 5.0), qtype)
    finally:
        transport.close()


async def baseline_one(name: str, info: dict[str, Any], context: ssl.SSLContext) -> bool:
    a, _ = await asyncio.gather(
        resolve(name, 1, info["dns_port"]), resolve(name, 28, info["dns_port"])
    )
    assert a is not None
    port = info["web_port"]
    _, writer = await asyncio.open_connection(a, port)  # the TCP step
    writer.close()
    _, writer = await asyncio.open_connection(a, port, ssl=context, server_hostname=name)
    writer.close()  # the TLS step
    reader, writer = await asyncio.open_connection(a, port, ssl=context, server_hostname=name)
    writer.write(f"GET / HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n".encode())
    response = await reader.read()  # the HTTP step: read to the end
    writer.close()
    return response.startswith(b"HTTP/1.1 200")


async def run_baseline(info: dict[str, Any], names: list[str], concurrency: int) -> int:
    context = ssl.create_default_context(cafile=info["ca_file"])
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> bool:
        async with gate:
            return await baseline_one(name, info, context)

    return sum(await asyncio.gather(*(one(n) for n in names)))


# --- the agent client ------------------------------------------------------------------------------


async def run_agent(info: dict[str, Any], names: list[str], concurrency: int) -> int:
    from agent.probes.dns_probe import ResolverSpec
    from agent.web_connectivity import ProbeSettings, measure_targets
    from protocol import NetworkContext, Target, Verdict

    settings = ProbeSettings(
        resolver=ResolverSpec.parse(f"127.0.0.1:{info['dns_port']}"),
        ca_file=info["ca_file"],
        routable_prefixes=("127.0.0.0/8",),
        concurrency=concurrency,
        max_endpoints=1,
    )
    targets = [Target(f"https://{n}:{info['web_port']}/", "international") for n in names]
    network = NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile")
    results = await measure_targets(targets, "ab" * 16, network, settings)
    return sum(m.verdict == Verdict.OK for m in results)


def client(kind: str, info: dict[str, Any], targets: int, concurrency: int) -> None:
    names = [f"t{i}.{DOMAIN}" for i in range(targets)]
    if kind == "agent":  # imports count for the whole process, not for the measuring phase
        import agent.web_connectivity  # noqa: F401
    started_cpu, started = time.process_time(), time.monotonic()
    run = run_agent if kind == "agent" else run_baseline
    ok = asyncio.run(run(info, names, concurrency))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "ok": ok,
                "measure_cpu_s": time.process_time() - started_cpu,
                "process_cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux reports kilobytes
                "wall_s": time.monotonic() - started,
            }
        )
    )


# --- the comparison ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each client, alternating")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=["agent", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.serve:
        asyncio.run(serve(args.targets))
        return 0
    if args.client:
        client(args.client, json.loads(args.info), args.targets, args.concurrency)
        return 0

    me = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen(
        [*me, "--serve", "--targets", str(args.targets)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        info = server.stdout.readline()
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "agent": []}
        for _ in range(args.rounds):
            for kind in ("baseline", "agent"):
                out = subprocess.run(
                    [*me, "--client", kind, "--info", info, "--targets", str(args.targets),
                     "--concurrency", str(args.concurrency)],
                    capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
                )  # fmt: skip
                runs[kind].append(json.loads(out.stdout))
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(10)

    def best(kind: str, key: str) -> float:
        return min(run[key] for run in runs[kind])

    print(
        f"{args.targets} https targets, concurrency {args.concurrency}, best of {args.rounds} runs"
    )
    print(f"{'':22}{'baseline':>10}{'agent':>10}{'ratio':>8}")
    for key, label in (
        ("measure_cpu_s", "CPU, measuring (s)"),
        ("process_cpu_s", "CPU, whole process (s)"),
        ("peak_rss_mb", "peak RSS (MB)"),
        ("wall_s", "wall, measuring (s)"),
    ):
        base, agent = best("baseline", key), best("agent", key)
        print(f"{label:22}{base:10.3f}{agent:10.3f}{agent / base:8.2f}")
    per_target = 1000 * best("agent", "measure_cpu_s") / args.targets
    print(f"agent CPU per target: {per_target:.2f} ms; ok: "
          f"baseline {runs['baseline'][-1]['ok']}/{args.targets}, agent {runs['agent'][-1]['ok']}/{args.targets}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
