"""Progress on stderr while a command works for longer than about a second: which spec, how
many nodes, which pass. Torch-free.

The CLI opens a session (only when stderr is a terminal); the engine calls `note()`, which does
nothing when no session is open (the API, tests, a language server, a pipe). Nothing shows
before `DELAY` seconds, so a quick run prints nothing, and the line is cleared when the session
ends, also on Ctrl-C (the CLI still exits 130). Machine formats (json, markdown, github) call
`quiet()`: their stderr is often read by another program too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from lazyspec.textsafe import visible

DELAY = 1.0  # seconds of work before the progress line shows


class _Session:
    """One command's progress line: a rich status spinner on `stream`, started by a timer."""

    def __init__(self, stream: TextIO, text: str, delay: float) -> None:
        from rich.console import Console  # imported here, not in the timer's thread

        self.console = Console(file=stream, highlight=False)
        self.text = text
        self.lock = threading.Lock()
        self.status: Any = None
        self.closed = False
        self.timer = threading.Timer(delay, self._start)
        self.timer.daemon = True

    def _start(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.status = self.console.status(_plain(self.text), spinner="dots")
            self.status.start()

    def note(self, text: str) -> None:
        with self.lock:
            self.text = text
            if self.status is not None:
                self.status.update(_plain(text))

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.timer.cancel()
            if self.status is not None:
                self.status.stop()
                self.status = None


_session: _Session | None = None


def note(text: str) -> None:
    """What the command is doing now (`specs/x.yaml: 1,024 nodes: dry run`); a no-op without
    a session."""
    session = _session
    if session is not None:
        session.note(text)


def quiet() -> None:
    """End the progress line of this command: its output is for a program (json, markdown,
    github)."""
    global _session
    session, _session = _session, None
    if session is not None:
        session.close()


@contextlib.contextmanager
def session(stream: TextIO, text: str, *, enabled: bool,
            delay: float | None = None) -> Iterator[None]:
    """A progress line on `stream` for the body, shown after `delay` (default DELAY) seconds
    when `enabled`; cleared when the body ends, however it ends."""
    global _session
    if not enabled:
        yield
        return
    current = _Session(stream, text, DELAY if delay is None else delay)
    _session = current
    current.timer.start()
    try:
        yield
    finally:
        _session = None
        current.close()


def _plain(text: str) -> Any:
    """The line as rich Text: a path with `[/x]` or `[link=...]` in it is shown, not read as
    markup (a markup error would end the thread; a link tag would write an OSC 8 hyperlink)."""
    from rich.text import Text

    return Text(visible(text))
