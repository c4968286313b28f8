"""`--watch`: run a command, then run it again whenever a file it read changes.

The command's run (`once`) returns what it read: the engine's `Outcome.read` (the spec and
every file it includes, also one it tried and failed to read or parse: a missing include is
watched until it comes back), plus whatever else the command names (the lock file,
pyproject.toml, folders of specs). This module waits for a change to one of them with
`watchfiles` (inotify, FSEvents or ReadDirectoryChangesW underneath), lets a burst of writes
settle, and runs again in the same process, so torch is imported once and a re-run costs
what the dry run costs.

- Folders are watched, not files: an editor that saves by writing a new file and renaming it
  over the old one (or deleting and re-creating it) replaces the file a file watch would follow.
- A run that fails (a half-typed spec, a missing file) is shown like any other and watching
  goes on, over the files of the last run that read them.
- The set of files follows the runs: an include added or removed is watched or dropped.

Torch-free; `watchfiles` is imported when watching starts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lazyspec.fileio import resolved

if TYPE_CHECKING:
    from watchfiles import Change

SETTLE_MS = 10  # a burst of writes (write, rename, chmod) has ended after this long without one
# (the watcher looks twice, so a change waits about 2 x SETTLE_MS before the run starts)
MAX_BURST_MS = 500  # ... and is cut here, so that a file written continuously still shows
REAPPEAR_S = 0.25  # a spec deleted by a save is given this long to come back before the run
MAX_FOLDERS = 2_000  # folders watched under the named folders of `check --watch` (limit)
SPEC_SUFFIXES = (".yaml", ".yml")
TICK_MS = 50  # a wait with no change returns after this long (the watcher starts on the first)
CLEAR = "\x1b[H\x1b[2J\x1b[3J"  # cursor home, clear the screen and its scroll-back


Snapshot = dict[Path, "tuple[int, ...] | None"]


@dataclass(frozen=True)
class Watched:
    """What a run read: files (absolute), and folders in which any spec file counts (`check`
    over a folder picks up a new spec)."""

    files: frozenset[Path] = frozenset()
    trees: frozenset[Path] = frozenset()

    @classmethod
    def of(cls, files: Iterable[str | os.PathLike[str]],
           trees: Iterable[str | os.PathLike[str]] = ()) -> Watched:
        found: set[Path] = set()
        for f in files:
            path = Path(os.path.abspath(f))
            found.add(path)
            found.add(resolved(path))  # a symlinked spec: its target's folder changes too
        return cls(frozenset(found), frozenset(resolved(os.path.abspath(t))
                                               for t in trees))

    def __or__(self, other: Watched) -> Watched:
        return Watched(self.files | other.files, self.trees | other.trees)

    def folders(self) -> frozenset[Path]:
        """The folders to watch (each without its subfolders)."""
        found = {_existing(f.parent) for f in self.files}
        for tree in sorted(self.trees):
            found.add(_existing(tree))
            found.update(_subfolders(tree, MAX_FOLDERS - len(found)))
        return frozenset(found)

    def wants(self, path: str) -> bool:
        """Whether a change at `path` (a watcher's event) concerns this run."""
        changed = Path(os.path.abspath(path))
        if changed in self.files:
            return True
        if any(changed in f.parents for f in self.files):
            return True  # a folder of a watched file, re-created
        return any(t == changed or t in changed.parents for t in self.trees) and (
            changed.suffix in SPEC_SUFFIXES or not changed.suffix)

    def snapshot(self) -> Snapshot:
        """Each file's identity, times and size, or None when it is missing: compared after a
        pause in watching, to see a change made while nothing watched."""
        out: Snapshot = {}
        for f in self.files:
            try:
                st = f.stat()
                out[f] = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
            except OSError:
                out[f] = None
        return out


def _existing(folder: Path) -> Path:
    """The folder, or its nearest existing ancestor (a deleted folder's re-creation shows
    there)."""
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    return folder


def _subfolders(tree: Path, limit: int) -> list[Path]:
    """Folders under `tree`, hidden ones (.git, .venv) left out, at most `limit`."""
    found: list[Path] = []
    for root, dirs, _ in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:
            if len(found) >= limit:
                return found
            found.append(Path(root, d))
    return found


class Screen:
    """Where the runs are drawn: in place on a terminal (the screen is cleared before each run),
    one after another with a line between them elsewhere (a pipe, a file, a CI log)."""

    def __init__(self, out: TextIO, err: TextIO, write: Callable[[TextIO, str], None],
                 tty: bool | None = None):
        self.out, self.err, self._write = out, err, write
        self.tty = out.isatty() and err.isatty() if tty is None else tty
        self.runs = 0

    def start(self, why: str) -> None:
        if self.tty:
            self.out.write(CLEAR)
            self.out.flush()
        elif self.runs:
            self._write(self.err, f"\nlazyspec: {why}: running again\n")
        self.runs += 1

    def done(self, watched: Watched, seconds: float) -> None:
        self.out.flush()  # the report before the status line, also when both go to one pipe
        count = len({f for f in watched.files if f == resolved(f)} or watched.files)
        where = f"{count} file{'s' if count != 1 else ''}"
        if watched.trees:
            where += f" and {len(watched.trees)} folder{'s' if len(watched.trees) != 1 else ''}"
        self._write(self.err, f"lazyspec: watching {where} (ran in {seconds * 1e3:,.0f} ms at "
                    f"{time.strftime('%H:%M:%S')}; Ctrl-C to stop)\n")
        self.err.flush()


Once = Callable[[], Watched]
OnError = Callable[[Exception], object]


def run(once: Once, base: Watched, screen: Screen, on_error: OnError, *,
        stop: threading.Event | None = None) -> None:
    """Run `once` now and after every change to what it read (and to `base`), until Ctrl-C
    (KeyboardInterrupt, raised here) or `stop` is set. An exception from `once` goes to
    `on_error`, and watching goes on over what the last successful run read and `base`."""
    watcher = _Watcher(stop)
    try:
        before = base.snapshot()  # the files as the run begins to read them
        watched, before = _run_once(once, base, base, before, screen, on_error, "start")
        while stop is None or not stop.is_set():
            changes = watcher.next_changes(watched, before)
            if changes is None:
                return
            _wait_for_reappearing(watched)
            before = watched.snapshot()
            watched, before = _run_once(once, base, watched, before, screen, on_error,
                                        _describe(changes))
    finally:
        watcher.close()


def _run_once(once: Once, base: Watched, last: Watched, before: Snapshot, screen: Screen,
              on_error: OnError, why: str) -> tuple[Watched, Snapshot]:
    """One run, drawn. Returns what it read, and the state of those files to compare with once
    a watcher is there: as they were before the run, or right after it for files the run read
    first (an include just added)."""
    screen.start(why)
    started = time.perf_counter()
    try:
        watched = once() | base
    except Exception as e:  # the run's error is shown; the files of the last run stay watched
        on_error(e)
        watched = last | base
    seconds = time.perf_counter() - started
    before = {**watched.snapshot(), **before}
    screen.done(watched, seconds)
    return watched, before


def _wait_for_reappearing(watched: Watched) -> None:
    """A save that deletes the file and writes it again a moment later: run on the new file,
    not on its absence. A file that stays away is run without (the run says it is missing)."""
    deadline = time.monotonic() + REAPPEAR_S
    missing = [f for f, state in watched.snapshot().items() if state is None]
    while missing and time.monotonic() < deadline:
        time.sleep(0.01)
        missing = [f for f in missing if not f.exists()]


def _describe(changes: set[tuple[Change, str]]) -> str:
    names = sorted({Path(p).name for _, p in changes})
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{shown} changed"


class _Watcher:
    """One `watchfiles.watch` generator, kept across runs while the folders stay the same (its
    watcher collects changes while a run goes on), re-created when they change."""

    def __init__(self, stop: threading.Event | None):
        self.stop = stop
        self.watched = Watched()
        self.folders: frozenset[Path] = frozenset()
        self.changes: Iterator[set[tuple[Change, str]]] | None = None

    def next_changes(self, watched: Watched, before: Snapshot,
                     ) -> set[tuple[Change, str]] | None:
        """The next burst of changes that concern `watched`; None once `stop` is set.
        `before`: the files as they were when the last run began, for a watcher opened after
        it (a change made while no watcher was there)."""
        self.watched = watched  # the filter reads it: a kept generator follows the new files
        folders = watched.folders()
        if self.changes is None or folders != self.folders:
            self._open(folders)
            first = self._next()  # the generator starts watching when first asked
            if first:
                return first
            now = watched.snapshot()
            changed = sorted(str(f) for f in now.keys() & before.keys() if now[f] != before[f])
            if changed:
                return {(_modified(), changed[0])}
        while self.stop is None or not self.stop.is_set():
            found = self._next()
            if found is None or found:
                return found
        return None

    def _next(self) -> set[tuple[Change, str]] | None:
        """One wait: changes, an empty set after TICK_MS without any, None once stopped."""
        assert self.changes is not None
        return next(self.changes, None)

    def _open(self, folders: frozenset[Path]) -> None:
        import watchfiles

        self.close()
        self.folders = folders
        self.changes = watchfiles.watch(
            *sorted(folders), watch_filter=self._wants, debounce=MAX_BURST_MS, step=SETTLE_MS,
            stop_event=self.stop, recursive=False, raise_interrupt=True,
            rust_timeout=TICK_MS, yield_on_timeout=True)

    def _wants(self, change: Any, path: str) -> bool:
        return self.watched.wants(path)

    def close(self) -> None:
        if self.changes is not None:
            close = getattr(self.changes, "close", None)
            if close is not None:
                close()
            self.changes = None


def _modified() -> Change:
    from watchfiles import Change

    return Change.modified


__all__ = ["Screen", "Watched", "run"]
