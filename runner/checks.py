"""Checks of what users give runner (names, text), shared by the client and the CLI.

None of them needs a server: a front end can run them before it connects.
"""

from __future__ import annotations

import re

from runner.context import MAX_WINDOW, MIN_WINDOW
from runner.errors import BadInput
from runner.keys import check_session
from runner.settings import QUEUE_PATTERN

__all__ = ["check_queue", "check_session", "check_text", "check_window", "decode_text"]

MAX_SHOWN = 40  # a rejected name is echoed back at most this long


def check_queue(name: str) -> str:
    """``name`` if it is a queue name, else BadInput."""
    if not re.fullmatch(QUEUE_PATTERN, name):
        raise BadInput(f"not a queue name: {name[:MAX_SHOWN]!r} (letters, digits, _ . -)")
    return name


def decode_text(data: bytes, what: str, limit: int) -> str:
    """UTF-8 bytes (from stdin or a file) as text; BadInput if too long or not UTF-8.

    Text that is not UTF-8 is refused rather than repaired: what the model is sent is
    then exactly what the user wrote.
    """
    if len(data) > limit:
        raise BadInput(f"{what} is over the limit of {limit} bytes (RUNNER_MAX_PROMPT_BYTES)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{what} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def check_text(text: str, what: str, limit: int) -> str:
    """``text`` if it is non-blank, valid UTF-8 and at most ``limit`` bytes; else BadInput.

    Command-line arguments that are not UTF-8 reach Python as lone surrogates; they are
    refused here with the byte that was wrong.
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise BadInput(f"{what} is not valid UTF-8 ({byte} at character {exc.start})") from None
    if not text.strip():
        raise BadInput(f"{what} is empty")
    if size > limit:
        raise BadInput(f"{what} is over the limit of {limit} bytes (RUNNER_MAX_PROMPT_BYTES)")
    return text


def check_window(tokens: int) -> int:
    """``tokens`` if it is a plausible context window (``--context-tokens``), else BadInput."""
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise BadInput("the context window must be a whole number of tokens")
    if not MIN_WINDOW <= tokens <= MAX_WINDOW:
        raise BadInput(f"context tokens must be {MIN_WINDOW} to {MAX_WINDOW}, not {tokens}")
    return tokens
