"""Server entry script for lab hosts: ``ip netns exec NS python tests/lab/labserve.py SPEC.json``.

Runs inside one namespace until SIGTERM. Two kinds of host (``kind`` in the spec):

- ``web``: the real sites of a server network. ``collector.labnet.LabWeb`` serves every site by its
  Host header on port 80, and again with TLS (a trustme certificate for all names) on 443.
- ``censor``: the censor's own web hosts. On ``blockpage`` it answers *any* Host with a 403 page in the
  style of Iran's filtering page (the built-in fingerprints know its markers), except the censor's
  notice host, which gets a plain 200 notice nobody has fingerprinted; on ``redirect`` it answers
  every request with a 302 to that notice page.

Prints ``ready`` on stdout once every listener is bound, so the lab can wait for it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from collector.labnet import LabWeb, Site

IRAN_STYLE_BLOCKPAGE = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1256">'
    "<title>M1-6</title></head><body>"
    '<iframe src="http://10.10.34.34?type=Invalid Site&policy=MainPolicy" style="width: 100%;'
    ' height: 100%" scrolling="no" marginwidth="0" marginheight="0" frameborder="0"'
    ' vspace="0" hspace="0"></iframe></body></html>'
)
NOTICE_PAGE = (
    "<!doctype html><title>Notice</title><h1>Access restricted</h1>"
    "<p>This content is not available on your network.</p>"
)


async def _serve_web(spec: dict[str, Any]) -> list[Any]:
    sites = {
        host: Site(title=s["title"], body=s["body"], headers=s.get("headers", {}))
        for host, s in spec["sites"].items()
    }
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(spec["cert_pem"])
    plain = await LabWeb(sites, "0.0.0.0", 80).start()
    tls = await LabWeb(sites, "0.0.0.0", 443, ssl_context=context).start()
    return [plain, tls]


def _censor_app(mode: str, notice_host: str) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        if mode == "redirect":
            raise web.HTTPFound(f"http://{notice_host}/blocked")
        if host == notice_host:
            return web.Response(text=NOTICE_PAGE, content_type="text/html")
        return web.Response(status=403, text=IRAN_STYLE_BLOCKPAGE, content_type="text/html")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


async def _serve_censor(spec: dict[str, Any]) -> list[Any]:
    runners = []
    for ip, port, mode in spec["listen"]:
        runner = web.AppRunner(_censor_app(mode, spec["notice_host"]), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, ip, port).start()
        runners.append(runner)
    return runners


async def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    servers = await (_serve_web(spec) if spec["kind"] == "web" else _serve_censor(spec))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        await (server.stop() if isinstance(server, LabWeb) else server.cleanup())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
