"""The texts runner sends a model on its own account, and a run's stored system prompt.

The system prompt is resolved at submit time (``--system TEXT|@FILE``, else
:data:`DEFAULT_SYSTEM`) and stored with the run under its own key (``Keys.system``), so
every attempt, on any worker of any version, sends the model the same one.
"""

from __future__ import annotations

from typing import Any

DEFAULT_SYSTEM = """\
You are an autonomous agent. You work unattended on the task in the first user message: \
nobody watches each step or answers questions while you work, so make reasonable \
decisions yourself and keep going until the task is done, then give a final answer \
(without a tool call) that says what you did, what you found and what is left undone.

Your world is a workspace directory of your own; it is your working directory and HOME. \
Use the tools you are given to inspect and change it: run commands, read and write \
files. File tools reach only inside the workspace; commands run without the operator's \
credentials. Do what the task needs and nothing beyond it.

Every step is saved as it happens: your messages, each tool result and the files in your \
workspace. The turn may be moved to another machine at any moment (a handoff) and go on \
there from the last saved step, with the same files. A tool call that was running when \
that happened gets this result: "interrupted: this call was interrupted by a handoff \
before its result was recorded; it may or may not have taken effect" (or "when its \
worker was lost" after a crash). Before repeating such a call, check whether it already \
took effect, and prefer commands that are safe to run twice.

Messages from a person may arrive between your steps as user messages; take them into \
account. A long turn outgrows the context window: older messages are then replaced by a \
summary, so keep what you must not forget (plans, findings) in files in the workspace."""

SUMMARY_HEADER = (
    "[Summary of the earlier part of this turn, written when the conversation outgrew the "
    "context window. The messages it replaces are kept in the run's transcript.]"
)

SUMMARISER_SYSTEM = (
    "You compact the history of an autonomous agent's turn so that it can go on within a "
    "limited context window. You are given the oldest part of the conversation; the "
    "newest part stays as it is and follows your summary."
)

SUMMARY_INSTRUCTION = """\
Write a summary of the conversation above that replaces it for the agent. Keep: the \
task as the user gave it (its exact words where short) and every later request; what \
has been done and what was found, with file paths, commands, identifiers, numbers and \
errors that still matter; decisions taken and why; what is left to do. Leave out \
repetition and raw output nobody will need again. Write plain text, at most about \
{words} words. Do not call any tool."""


def summary_text(summary: str) -> str:
    """The content of the message that stands for a summary in the model's view."""
    return f"{SUMMARY_HEADER}\n\n{summary}"


def summary_instruction(words: int) -> str:
    """The request that ends a summarising call, with the length the summary may take."""
    return SUMMARY_INSTRUCTION.format(words=words)


def save_system(redis: Any, key: str, text: str, ttl_ms: int) -> None:
    """Store a run's system prompt before its run exists; ``create.lua`` makes it permanent.

    The TTL means a submit that fails between the two leaves nothing behind.
    """
    redis.set(key, text, px=ttl_ms)
