"""Talking to the collector over HTTP: register the key, upload signed batches, ask who we are."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import aiohttp

from protocol import SignedBatch, SigningKey, make_registration, utc_now

from .errors import RejectedError, UploadError

TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


def _error_detail(status: int, text: str) -> RejectedError:
    try:
        error = json.loads(text)["error"]
        return RejectedError(status, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return RejectedError(status, "http_error", text[:200])


class CollectorClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def _post(self, path: str, data: bytes, content_type: str) -> dict[str, Any]:
        return await self._request("POST", path, data, {"Content-Type": content_type})

    async def _request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            async with self.session.request(
                method, self.base_url + path, data=data, headers=headers, timeout=TIMEOUT
            ) as response:
                text = await response.text()
                if 400 <= response.status < 500:
                    raise _error_detail(response.status, text)
                if response.status >= 500:
                    raise UploadError(f"collector error {response.status}: {text[:200]}")
                result = json.loads(text)
                if not isinstance(result, dict):
                    raise ValueError("the collector's answer is not a JSON object")
                return result
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UploadError(
                f"cannot reach collector at {self.base_url}: {exc or type(exc).__name__}"
            ) from exc

    async def register(self, key: SigningKey) -> dict[str, Any]:
        body = json.dumps(make_registration(key, utc_now())).encode()
        return await self._post("/api/v1/agents", body, "application/json")

    async def upload(self, signed: SignedBatch) -> dict[str, Any]:
        return await self._post("/api/v1/batches", signed.to_bytes(), "application/msgpack")

    async def post_signed(self, path: str, document: bytes) -> dict[str, Any]:
        """POST a signed msgpack document (e.g. a test-list refusal report)."""
        return await self._post(path, document, "application/msgpack")

    async def whoami(self, agent_id: str) -> bytes:
        """The collector-signed context token for this network (``protocol.context_token``)."""
        answer = await self._request("GET", f"/api/v1/whoami?agent_id={agent_id}")
        try:
            return base64.b64decode(str(answer["token"]), validate=True)
        except (KeyError, binascii.Error, ValueError) as exc:
            raise UploadError(f"collector at {self.base_url} sent no usable token") from exc
