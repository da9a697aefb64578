"""The in-place view of what is in flight on a terminal: ``runner follow`` between commits.

Committed events are printed as log lines (``render.events``); the answer being streamed
is drawn below them, redrawn as deltas arrive, and erased when the committed message
that supersedes it is printed. Only used on a terminal: a pipe gets committed events only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from runner.cli import plain
from runner.cli.text import visible
from runner.events import DeltaEvent

LIVE_LINES = 8  # the streamed answer's last lines shown; the committed message has all
ARGS_CHARS = 200


class LiveView:
    """Prints committed events, and redraws the streaming answer in place beneath them."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.after = ""
        self.text = ""
        self.args: dict[int, tuple[str, str]] = {}
        self.note = ""

    def show(self, batch: Sequence[Any]) -> None:
        """One batch of ``Client.follow_live``: committed events first, then deltas."""
        committed = [ev for ev in batch if not isinstance(ev, DeltaEvent)]
        if committed:
            self._clear()
            target = self.console
            if self.live is not None:
                # Erase first: printing above a Live redraws its current (stale) drawing.
                self.live.update(Text(""), refresh=True)
                target = self.live.console
                _rich_events(target, committed)
            elif plain.paints(target):
                # Nothing drawn in place: write rich's bytes without rich's cost (a replay).
                plain.events(target.file, committed, target)
                target.file.flush()
            else:
                _rich_events(target, committed)
        deltas = [ev for ev in batch if isinstance(ev, DeltaEvent)]
        for delta in deltas:
            self._apply(delta)
        if deltas or committed:
            self._redraw()

    def close(self) -> None:
        """Erase the in-flight part and give the terminal back."""
        if self.live is not None:
            self._clear()
            self.live.stop()
            self.live = None

    def _clear(self) -> None:
        self.text, self.note, self.args = "", "", {}

    def _apply(self, delta: DeltaEvent) -> None:
        if delta.after != self.after:
            self._clear()  # the answer to a later point of the turn: start afresh
            self.after = delta.after
        if delta.kind == "text":
            self.text += delta.text
        elif delta.kind == "args" and delta.call is not None:
            name, before = self.args.get(delta.call, (delta.name or "", ""))
            self.args[delta.call] = (name, before + delta.text)
        elif delta.kind == "note":
            self.note = delta.text
        elif delta.kind == "reset":
            self._clear()

    def _redraw(self) -> None:
        shown = self.drawing()
        if self.live is None:
            if not shown.plain:
                return
            self.live = Live(
                console=self.console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.live.start()
        self.live.update(shown, refresh=True)

    def drawing(self) -> Text:
        """What is in flight, as drawn: the answer's last lines, call arguments, a note."""
        parts: list[Text] = []
        if self.text:
            # The tail that fits in about LIVE_LINES rows: one long line wraps to many.
            tail = visible(self.text)[-LIVE_LINES * max(self.console.width, 20) :]
            lines = tail.splitlines()[-LIVE_LINES:]
            parts.append(Text.assemble(("assistant", "bold green"), " … ", "\n".join(lines)))
        for name, args in self.args.values():
            cut = visible(args)[-ARGS_CHARS:]
            parts.append(Text.assemble(("calls ", "dim"), (visible(name), "magenta"), f" {cut}"))
        if self.note:
            parts.append(Text(visible(self.note), "dim italic"))
        shown = Text("\n").join(parts)
        # Wrapped, even on the CLI's soft-wrapping console: a Live crops what it does not wrap.
        shown.no_wrap, shown.overflow = False, "fold"
        return shown


def _rich_events(console: Console, committed: Sequence[Any]) -> None:
    from runner.cli import render  # its tables and styles: a replay does without them

    render.events(console, committed)
