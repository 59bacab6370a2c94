"""chaos/CONTRACT.md's wire-protocol test vectors hold for service/transports/wire_protocol.py,
and the contract names every placeholder the harness fills in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chaos.gateway import PLACEHOLDERS
from service.errors import MalformedInput
from service.transports.wire import ban_close_reason
from service.transports.wire_protocol import decode, encode, encode_bytes, from_ws_close_code, to_ws_close_code

CONTRACT = Path(__file__).resolve().parents[2] / "chaos" / "CONTRACT.md"


def vectors() -> list[dict]:
    text = CONTRACT.read_text(encoding="utf-8")
    [block] = re.findall(r"```jsonl\n(.*?)```", text, flags=re.S)
    return [json.loads(line) for line in block.splitlines() if line.strip()]


def test_the_contract_has_vectors_of_every_kind():
    kinds = {next(iter(v)) for v in vectors()}
    assert kinds >= {"encode", "decode", "decode_hex", "decode_size", "whatsapp_code", "ws_close_code", "ban_wait_s"}


@pytest.mark.parametrize("vector", vectors(), ids=lambda v: json.dumps(v)[:60])
def test_a_vector_holds_for_the_code(vector):
    if "encode" in vector:
        frame_type, fields = vector["encode"]
        assert encode(frame_type, **fields) == vector["frame"]
        assert decode(vector["frame"]) == {"type": frame_type, **fields}
    elif "whatsapp_code" in vector and "ws_close_code" in vector and vector["whatsapp_code"] is not None:
        assert to_ws_close_code(vector["whatsapp_code"]) == vector["ws_close_code"]
        assert from_ws_close_code(vector["ws_close_code"]) == vector["whatsapp_code"]
    elif "ws_close_code" in vector:
        assert from_ws_close_code(vector["ws_close_code"]) is None
    elif "ban_wait_s" in vector:
        assert ban_close_reason(vector["ban_wait_s"]) == vector["close_reason"]
    else:
        raw = (bytes.fromhex(vector["decode_hex"]) if "decode_hex" in vector
               else "x" * vector["decode_size"] if "decode_size" in vector else vector["decode"])
        if "error" in vector:
            with pytest.raises(MalformedInput, match=re.escape(vector["error"])):
                decode(raw)
        else:
            assert decode(raw) == vector["frame"]


def test_the_contract_documents_every_placeholder():
    text = CONTRACT.read_text(encoding="utf-8")
    missing = [name for name in PLACEHOLDERS if f"`{{{name}}}`" not in text]
    assert missing == []


@pytest.mark.parametrize("credentials", ["", "plain", "p\u00e4ss", "\u2603\U0001f600", 'quote " and \\ backslash',
                                         "".join(map(chr, range(32))) + "\x7f", "\ud7ff\ue000\uffff", "x" * 4096])
def test_an_encoded_frame_decodes_to_what_was_encoded(credentials: str) -> None:
    """Any text a hello may carry survives the trip (the frames are UTF-8 JSON, escaped as needed)."""
    frame = encode_bytes("hello", session_id="s1", credentials=credentials)
    assert decode(frame) == {"type": "hello", "session_id": "s1", "credentials": credentials}
    assert json.loads(frame) == json.loads(json.dumps({"type": "hello", "session_id": "s1", "credentials": credentials}))
    assert encode("hello", session_id="s1", credentials=credentials) == frame.decode("utf-8")
