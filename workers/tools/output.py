"""What a tool returns, made fit for the transcript: capped visibly, binary described.

A tool result is committed as JSON text and shown to followers' terminals, so it must be
valid UTF-8 of bounded size whatever the tool produced:

- text over the cap keeps its head and its tail, and says how many bytes were cut;
- invalid UTF-8 bytes in text become U+FFFD (lone surrogates in a ``str`` as well);
- output that is not text at all (NUL bytes, or mostly undecodable) is not shown as
  text: the model reads its size, its SHA-256 and its first bytes in hex.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

# How much of the output is looked at to tell binary from text.
_SNIFF_BYTES = 8192
# Above this share of undecodable bytes, output is binary rather than damaged text.
_BAD_SHARE = 0.10
_HEX_BYTES = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def looks_binary(data: bytes) -> bool:
    """Whether ``data`` is not text: a NUL byte, or too many bytes that are not UTF-8."""
    sample = data[:_SNIFF_BYTES]
    if b"\x00" in sample:
        return True
    if not sample:
        return False
    # A multi-byte character cut at the sample's end is not damage.
    text = sample.decode("utf-8", errors="replace").removesuffix("\ufffd")
    return text.count("\ufffd") > _BAD_SHARE * len(sample)


def describe_binary(data: bytes, total: int) -> str:
    """A binary output as the model reads it: size, digest of what was kept, first bytes."""
    head = data[:_HEX_BYTES].hex(" ")
    digest = hashlib.sha256(data).hexdigest()[:16]
    whole = "" if len(data) == total else f" (sha256 of the first {len(data)} bytes)"
    return (
        f"[binary output: {total} bytes, not shown as text; sha256 {digest}{whole}; "
        f"first {min(len(data), _HEX_BYTES)} bytes: {head}]"
    )


def bytes_text(data: bytes, limit: int, total: int | None = None) -> str:
    """The first ``limit`` bytes of ``data`` as text, saying how many were trimmed.

    ``total`` is the size of the whole output when ``data`` is only its head.
    """
    total = len(data) if total is None else total
    if looks_binary(data):
        return describe_binary(data[:limit], total)
    text = data[:limit].decode("utf-8", errors="replace")
    if total > limit:
        text += f"\n[... {total - limit} bytes trimmed]"
    return text


def safe_str(text: str) -> str:
    """``text`` with lone surrogates replaced, so it encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def fit(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-8 bytes (plus a note): its head and tail, cut visibly."""
    text = safe_str(text)
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    tail_bytes = limit // 4
    head = data[: limit - tail_bytes].decode("utf-8", "ignore")
    tail = data[len(data) - tail_bytes :].decode("utf-8", "ignore")
    cut = len(data) - len(head.encode()) - len(tail.encode())
    return f"{head}\n[... {cut} bytes trimmed ...]\n{tail}"


def to_text(value: Any, limit: int) -> str:
    """What a user's tool returned, as capped text: str, bytes, None or anything JSON."""
    if value is None:
        return "(no output)"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes_text(bytes(value), limit)
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, default=str)
    return fit(value, limit)
