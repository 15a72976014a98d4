"""Vantage's wire protocol: pure (no sockets, no event loop), shared by the agent and the collector.

Bytes in, objects out, like h11: messages, the canonical encoding, signatures, failure strings and
verdict names. Everything here is tested without a network.
"""

from .canonical import DEFAULT_LIMITS, DecodeLimits, canonical_decode, canonical_encode
from .envelope import (
    SignedBatch,
    decode_signed_batch,
    make_registration,
    sign_batch,
    verify_registration,
)
from .errors import (
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    SchemaError,
    SignatureError,
    VantageError,
)
from .messages import (
    MAX_BATCH_MEASUREMENTS,
    TEST_WEB,
    Batch,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    Target,
    TcpResult,
    new_uid,
)
from .receipt import Receipt, SignedReceipt, check_receipt, receipt_from_json, sign_receipt
from .signing import SigningKey, agent_id_for, verify
from .timefmt import format_time, parse_time, utc_now
from .verdicts import Blocking, NetworkType, Scope, Verdict

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_BATCH_MEASUREMENTS",
    "TEST_WEB",
    "Batch",
    "Blocking",
    "DecodeError",
    "DecodeLimits",
    "DnsResult",
    "HttpResult",
    "LocalProtocolError",
    "Measurement",
    "NetworkContext",
    "NetworkType",
    "Receipt",
    "RemoteProtocolError",
    "SchemaError",
    "Scope",
    "SignatureError",
    "SignedBatch",
    "SignedReceipt",
    "SigningKey",
    "Target",
    "TcpResult",
    "VantageError",
    "Verdict",
    "agent_id_for",
    "canonical_decode",
    "canonical_encode",
    "check_receipt",
    "decode_signed_batch",
    "format_time",
    "make_registration",
    "new_uid",
    "parse_time",
    "receipt_from_json",
    "sign_batch",
    "sign_receipt",
    "utc_now",
    "verify",
    "verify_registration",
]
