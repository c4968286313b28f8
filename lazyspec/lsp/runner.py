"""The analysis worker: one process that imports torch once and runs the engine on buffers, and
the thread in the server that feeds it.

The server's event loop never runs the engine: a 70B spec or a symbolic pass takes seconds, and
the editor must keep its answers (hover, completion) and keep sending edits meanwhile. So:

- `submit(job)` only records the job: per document, only the newest version waits (an older one
  still waiting is dropped), and the thread hands the waiting jobs to the worker one at a time.
- A newer edit supersedes the run in progress: its result will be dropped (the server checks the
  version). When that run has already taken longer than starting a fresh worker takes (measured
  at the worker's start), the worker is killed and restarted instead of waited for, a rule that
  never costs more than twice the better choice (the ski-rental argument): a quick run is let
  finish, a run that may go on for long is cut.
- A worker that dies (killed for memory, a crash in native code) is restarted; the job it was
  running gets a diagnostic that says so.

The worker starts as `check -j`'s do (lazyspec.parallel: forked warm from a fork server that
imported torch once, never from the server itself, so that a restart costs milliseconds, not an
import of torch), never takes Ctrl-C (the editor stops the server, the server stops the worker),
and exits when the server's end of the pipe closes, so it never outlives the server. Its stdout
is pointed at stderr: the server's stdout carries the protocol.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from lazyspec.errors import Diagnostic, Location
from lazyspec.lsp.analysis import Analysis, Job
from lazyspec.parallel import sigint_blocked, worker_context

RESTART_FLOOR_S = 0.5  # never kill a run younger than this, however fast a worker starts
POLL_S = 0.02  # how often the thread looks for a result, a newer edit or a dead worker
START_TIMEOUT_S = 300.0  # a worker that has not imported torch by then is taken as failed


def worker_main(conn: Connection) -> None:
    """The worker process: warm up, say which op names exist, then analyse jobs until the
    server closes the pipe or sends None."""
    os.dup2(2, 1)  # a print in a layer or in torch must not reach the protocol's stream
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from lazyspec.lsp.analysis import analyze, known_names
    from lazyspec.parallel import warm_up

    warm_up()
    conn.send(("ready", known_names()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        found = analyze(job)
        try:
            conn.send(("done", found))
        except OSError:  # the server is gone
            return


class Runner:
    """Feeds one worker process the newest job of each document; `deliver` gets each result
    (from this runner's thread), `ready` the op names once the first worker is up."""

    def __init__(self, deliver: Callable[[Analysis], None],
                 ready: Callable[[list[str]], None] | None = None,
                 cut_after: float | None = None):
        self._deliver, self._ready = deliver, ready
        self._cut_after = cut_after  # None: the measured restart cost (tests set it)
        self._cond = threading.Condition()
        self._pending: dict[str, Job] = {}  # uri -> newest job not yet started, oldest first
        self._closed = False
        self._process: Any = None
        self._conn: Connection | None = None
        self.restart_cost = RESTART_FLOOR_S  # seconds a fresh worker takes to be ready
        self.started_workers = 0
        self.cut_runs = 0  # runs stopped by killing the worker for a newer edit
        self.in_flight: tuple[str, int] | None = None  # (uri, version) of the running job
        self._thread = threading.Thread(target=self._loop, name="lazyspec-analysis",
                                        daemon=True)
        self._thread.start()

    # --- called from the server's thread --------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._cond:
            self._pending.pop(job.uri, None)  # re-inserted last: documents take turns
            self._pending[job.uri] = job
            self._cond.notify_all()

    def forget(self, uri: str) -> None:
        with self._cond:
            self._pending.pop(uri, None)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and the worker (killed if it does not stop within `timeout`)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._stop_worker(timeout)

    @property
    def worker_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # --- the runner's thread --------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                job = self._next()
                if job is None:
                    return
                self.in_flight = (job.uri, job.version)
                found = self._run(job)
                self.in_flight = None
                if found is not None:
                    self._deliver(found)
        finally:
            self._stop_worker(1.0)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            uri = next(iter(self._pending))
            return self._pending.pop(uri)

    def _run(self, job: Job) -> Analysis | None:
        """The job's analysis; None when it was superseded and cut, or the runner closed."""
        if not self._ensure_worker():
            return None if self._closed else _failed(job, "the analysis process could not "
                                                     "start (is torch installed?)")
        assert self._conn is not None
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the worker died: seen below
            self._conn.send(job)
        while True:
            try:
                if self._conn.poll(POLL_S):
                    _, found = self._conn.recv()
                    return found  # type: ignore[no-any-return]
            except (EOFError, OSError):
                time.sleep(POLL_S)  # the worker died: seen below, once it has exited
            if not self._process.is_alive():
                code = self._process.exitcode
                self._forget_worker()
                return _failed(job, f"the analysis process ended ({_how(code)}) while running "
                               "this spec", "it may have run out of memory; edit the spec to "
                               "run it again")
            if self._closed or self._superseded(job, time.monotonic() - started):
                self._stop_worker(0.0)
                return None

    def _superseded(self, job: Job, elapsed: float) -> bool:
        """A newer version of this document waits, and this run has outlived a restart."""
        with self._cond:
            newer = job.uri in self._pending
        limit = self.restart_cost if self._cut_after is None else self._cut_after
        if newer and elapsed > limit:
            self.cut_runs += 1
            return True
        return False

    def _ensure_worker(self) -> bool:
        if self._process is not None and self._process.is_alive():
            return True
        self._forget_worker()
        context = worker_context()
        mine, theirs = context.Pipe()
        process = context.Process(target=worker_main, args=(theirs,), daemon=True,
                                  name="lazyspec-lsp-worker")
        started = time.monotonic()
        with sigint_blocked():  # Ctrl-C in a terminal is the server's to handle, not the worker's
            process.start()
        theirs.close()
        self._process, self._conn = process, mine
        self.started_workers += 1
        while not self._closed and process.is_alive():
            if time.monotonic() - started > START_TIMEOUT_S:
                break
            try:
                if mine.poll(POLL_S):
                    _, names = mine.recv()
                    if self.started_workers > 1 or context.get_start_method() != "forkserver":
                        # (the first start from a fork server includes starting the server,
                        # which later restarts do not pay)
                        self.restart_cost = max(RESTART_FLOOR_S, time.monotonic() - started)
                    if self._ready is not None:
                        self._ready(names)
                    return True
            except (EOFError, OSError):
                break
        self._stop_worker(0.0)
        return False

    def _stop_worker(self, timeout: float) -> None:
        process, conn = self._process, self._conn
        self._forget_worker()
        if process is None:
            return
        if timeout > 0 and conn is not None and process.is_alive():
            with contextlib.suppress(OSError):
                conn.send(None)
            process.join(timeout)
        if process.is_alive():
            process.kill()
        process.join(5.0)
        if conn is not None:
            conn.close()

    def _forget_worker(self) -> None:
        self._process = self._conn = None


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _failed(job: Job, message: str, hint: str | None = None) -> Analysis:
    return Analysis(job.uri, job.version, job.path,
                    diagnostics=[Diagnostic("LS303", message, Location(job.path, 1, 1),
                                            hint=hint)])


__all__ = ["Runner", "worker_main"]
