"""Warm worker processes: run many engine calls in parallel, results in the order asked.

`check -j N` and `lock -j N` hand their planned runs to a `Pool`; `check --watch` keeps one
`Pool` across its re-runs; the language server's analysis worker starts the same way. Workers
are never forked from the process that asked for them (torch and `fork` do not mix: a child
forked from a process that ran torch inherits its thread pools and locks in whatever state they
were, and CUDA cannot be used in it). Where the platform has it, they come from multiprocessing's
fork server: a process started afresh (as `spawn` would), which imports torch and runs a tiny
spec through the engine once (`lazyspec.warm`: the first meta operation imports `torch._dynamo`
and SymPy), with one thread and nothing else run, and forks each worker from that state, so a
worker starts warm in milliseconds instead of paying the imports again. Elsewhere each worker is
spawned and warms up itself. The engine keeps no state between runs, so a worker's second call
sees exactly what a fresh process would.

Torch-free on import: the parent process never needs torch when the workers do the runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Any, TypeVar

from lazyspec.errors import Diagnostic, UsageError

T = TypeVar("T")

MAX_JOBS = 64  # past it a typo (`-j 1000`) would start a thousand torch processes (~300 MB each)
JOBS_ENV = "LAZYSPEC_JOBS"  # the default of -j where the flag is not given


def cores() -> int:
    """The cores this process may run on (a CI runner or a container may allow fewer than the
    machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def jobs_from(flag: int | None) -> int:
    """`-j N`, else $LAZYSPEC_JOBS, else the number of cores; raises UsageError past MAX_JOBS
    or on an unreadable $LAZYSPEC_JOBS."""
    if flag is None:
        raw = os.environ.get(JOBS_ENV, "").strip()
        if not raw:
            return cores()
        if not raw.isdigit() or int(raw) < 1 or len(raw) > 6:
            raise UsageError([Diagnostic("LS301", f"${JOBS_ENV} must be a whole number of "
                                         f"processes, 1 or more (it is '{raw[:40]}')",
                                         hint="unset it to use every core, or set it to 1")])
        flag, what = int(raw), f"${JOBS_ENV}"
    else:
        what = "-j"
    if flag > MAX_JOBS:
        raise UsageError([Diagnostic("LS301", f"{what} {flag}: more than {MAX_JOBS} worker "
                                     "processes (limit)", hint="each worker loads torch "
                                     "(about 300 MB); use at most the number of cores")])
    return flag


def warm_up() -> None:
    """Import torch and run a tiny spec through the engine, so that the first real run costs
    what every later one does."""
    from lazyspec import engine
    from lazyspec.inputs import parse_input

    engine.run(engine.Request("warm-up.yaml", text="layers:\n  - LazyLinear(2)\n",
                              inputs=(parse_input("1,2"),)))


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Start worker processes inside this: Ctrl-C goes to the whole process group, and a worker
    must never take it (a KeyboardInterrupt traceback of its own, in the middle of importing
    torch); its parent stops it. A forked child inherits its starting thread's blocked signals;
    the fork server, started by exec, does not, and blocks SIGINT itself (lazyspec.warm). Here,
    a Ctrl-C that came meanwhile arrives when this ends."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_context() -> ForkServerContext | SpawnContext:
    """How workers start: forked from a warm fork server where the platform has one, else
    spawned (see the module's docstring)."""
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["lazyspec.warm"])  # no effect once the server runs
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


def _init_worker(jobs: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also where blocking is not available
    import torch

    # torch's own threads (a --device cpu run) share the cores with the other workers
    torch.set_num_threads(max(1, cores() // jobs))
    warm_up()  # milliseconds in a worker forked warm; the imports in a spawned one


class Pool:
    """`jobs` warm worker processes, started on first use and kept until `close()`."""

    def __init__(self, jobs: int):
        self.jobs = max(1, jobs)
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(kill=kind is not None)  # leaving on Ctrl-C or an error: do not wait

    def map(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]],
            costs: Sequence[float] | None = None) -> list[T]:
        """`fn(*call)` for every call, in the workers; the results in the order of `calls`.
        Calls are handed out most costly first (`costs`, a guess), so that one long run does
        not start last and keep the others waiting. An exception raised by a call is raised
        here (after the calls already running end); a worker that dies raises UsageError."""
        if not calls:
            return []
        executor = self._start()
        order = sorted(range(len(calls)), key=lambda i: -(costs[i] if costs else 0))
        futures: dict[int, Future[T]] = {}
        try:
            with sigint_blocked():  # the executor starts its workers as calls are submitted
                for i in order:
                    futures[i] = executor.submit(fn, *calls[i])
            return [futures[i].result() for i in range(len(calls))]
        except BrokenProcessPool:
            self.close(kill=True)
            raise _worker_died(calls, futures) from None
        except Exception:  # a call's own exception (a bug): what is queued is not started
            for f in futures.values():
                f.cancel()
            raise
        except BaseException:  # Ctrl-C: stop at once, without waiting for the runs in progress
            self.close(kill=True)
            raise

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.jobs, mp_context=worker_context(),
                                                 initializer=_init_worker,
                                                 initargs=(self.jobs,))
        return self._executor

    def close(self, kill: bool = False) -> None:
        """Stop the workers: after their current call, or at once with `kill`."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if kill:
            # The executor has no public way to stop a running call; its process table is
            # the one handle on the workers (CPython 3.8+).
            for process in list(getattr(executor, "_processes", {}).values()):
                process.kill()
        executor.shutdown(wait=True, cancel_futures=True)


def _worker_died(calls: Sequence[tuple[Any, ...]], futures: dict[int, Future[Any]]) -> UsageError:
    """A worker that ended abruptly (killed for memory, a crash in native code): exit 2, naming
    the calls that had not finished (one of them was running in it)."""
    unfinished = [calls[i][0] for i, f in sorted(futures.items())
                  if not f.done() or f.cancelled() or f.exception() is not None]
    shown = ", ".join(dict.fromkeys(str(c) for c in unfinished[:5])) or "unknown"
    return UsageError([Diagnostic(
        "LS303", f"a worker process ended abruptly while running one of: {shown}",
        hint="run with -j 1 to see which one; a worker that runs out of memory is killed by "
        "the system")])


__all__ = ["MAX_JOBS", "Pool", "cores", "jobs_from", "sigint_blocked", "warm_up",
           "worker_context"]
