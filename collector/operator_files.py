"""Files and HTTP for the operator's commands: key files, public-key files, signed documents, posts.

An operator key is 32 raw bytes in a file of mode 0600 (like the agent's); its public half is a
``.pub`` file beside it holding one base64 line, the form agents pin (``operator_keys``) and collectors
trust (``--operator-keys``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from protocol import LocalProtocolError, RemoteProtocolError, SigningKey, VantageError
from protocol.keyset import format_public_key, parse_public_key
from protocol.secretfile import SecretFileError, read_secret, write_new_secret


class OperatorError(VantageError):
    """A problem the operator can fix (bad file, bad flag): exit 2."""

    exit_code = 2


class CollectorRefused(VantageError):
    """The collector refused or could not be reached: exit 1."""

    exit_code = 1


def pub_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def create_operator_key(path: Path) -> SigningKey:
    key = SigningKey.generate()
    try:
        write_new_secret(path, key.raw)
    except SecretFileError as exc:
        raise OperatorError(str(exc)) from exc
    pub_path(path).write_text(format_public_key(key.public_key) + "\n", encoding="ascii")
    return key


def load_operator_key(path: Path) -> SigningKey:
    try:
        raw = read_secret(path)
    except FileNotFoundError:
        raise OperatorError(
            f"no operator key at {path}; create one with `vantage operator keygen`"
        ) from None
    except SecretFileError as exc:
        raise OperatorError(str(exc)) from exc
    try:
        return SigningKey.from_raw(raw)
    except LocalProtocolError as exc:
        raise OperatorError(f"operator key {path} is damaged: {exc}") from exc


def read_public_key(text: str) -> bytes:
    """A public key given as base64, as a ``.pub`` file, or as a private key file (its public half)."""
    path = Path(text)
    try:
        if path.is_file():
            data = path.read_bytes()
            if len(data) == 32 and not path.name.endswith(".pub"):
                return load_operator_key(path).public_key
            return parse_public_key(data.decode("ascii"))
        return parse_public_key(text)
    except (RemoteProtocolError, UnicodeDecodeError) as exc:
        raise OperatorError(f"{text}: not an operator public key: {exc}") from exc


def read_document(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OperatorError(f"cannot read {path}: {exc.strerror}") from exc


def write_document(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def post(collector: str, path: str, body: bytes) -> dict[str, Any]:
    """POST signed msgpack; the JSON answer, or ``CollectorRefused`` with the collector's reason."""
    import aiohttp

    async def run() -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=60, sock_connect=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(
                collector.rstrip("/") + path,
                data=body,
                headers={"Content-Type": "application/msgpack"},
            ) as response,
        ):
            return response.status, await response.text()

    try:
        status, text = asyncio.run(run())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise CollectorRefused(
            f"cannot reach collector at {collector}: {exc or type(exc).__name__}"
        ) from exc
    try:
        answer: dict[str, Any] = json.loads(text)
    except ValueError:
        answer = {"error": {"code": "http_error", "message": text[:200]}}
    if status >= 400:
        error = answer.get("error", {})
        raise CollectorRefused(
            f"collector refused ({status} {error.get('code', '?')}): {error.get('message', '')}"
        )
    return answer
