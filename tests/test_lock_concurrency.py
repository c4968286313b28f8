"""Concurrent `lazyspec lock` runs sharing one lock file lose no entries (issue 9, item 2).

Four worker processes each import lazyspec once and run ten synchronised rounds: in round r,
worker i runs `lazyspec lock s{i}.yaml --input 2,{20+r}` (in-process, through `cli.main`) on the
same lock file, all four released together by a barrier. After every round each worker reads the
lock and checks that it holds this round's entry of every worker, and every entry of the specs no
worker touches. The lock file starts with ~0.3 MB of such entries, so that each read-merge-write
takes long enough to overlap with the others': without the OS lock, rounds lose entries.

The dry run is not what is under test, and importing torch in four processes on a 2-core CI
machine takes longer than the whole test: the workers replace `gate.run_one` with a torch-free
stand-in that returns the entry a `LazyLinear(16)` would give. Everything after it (the gate,
the lock file's read-merge-write, the OS lock, the atomic write) is lazyspec's own code.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from lazyspec import lock as lockfile

WORKERS = 4
ROUNDS = 10
SEED_SPECS = 20  # entries of specs no worker locks: they must survive every round
MLP = "layers:\n  - LazyLinear(16)\n"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock: POSIX")


def seed_entries() -> list[lockfile.LockEntry]:
    return [lockfile.LockEntry(f"seed/s{n}.yaml", "input=2,8", ["2,8"], [[2, 8]], 1000,
                               {f"layer{k}.weight": [8, 8] for k in range(150)})
            for n in range(SEED_SPECS)]


def expected(round_: int) -> set[tuple[str, str]]:
    return ({(f"s{i}.yaml", f"input=2,{20 + round_}") for i in range(WORKERS)}
            | {e.ident for e in seed_entries()})


def dry_run_stand_in(spec: Path, run: Any, key_root: Path, options: Any, config: Any) -> Any:
    """What `gate.run_one` returns for `LazyLinear(16)` at input `2,W`, without torch."""
    from lazyspec import gate
    from lazyspec.result import InferResult, ParamRecord, Totals

    width = int(run.inputs[0].split(",")[1])
    outcome = gate.RunOutcome(spec, gate.spec_key(spec, key_root),
                              lockfile.run_key(run.inputs, run.scale, run.sets), run)
    weight = ParamRecord("0.weight", "LazyLinear", "Linear", (16, width), 16 * width, "float32",
                         64 * width, True, None)
    outcome.result = InferResult(str(spec), None, "meta", "float32", [], [(2, 16)], [weight],
                                 [], Totals(16 * width, 16 * width, 64 * width, 0, 0))
    return outcome


def worker(folder: str, index: int, barrier: Any, failures: Any) -> None:
    """One `lazyspec lock` process: ROUNDS runs of its own spec, each checked afterwards."""
    from lazyspec import gate
    from lazyspec.cli import main

    gate.run_one = dry_run_stand_in  # type: ignore[assignment]
    os.chdir(folder)
    os.environ["NO_COLOR"] = "1"
    os.environ.pop("GITHUB_STEP_SUMMARY", None)
    for round_ in range(ROUNDS):
        barrier.wait()  # every worker starts its round's run at once
        try:
            main(["lock", f"s{index}.yaml", "--input", f"2,{20 + round_}", "--lock", "l.lock",
                  "--output-file", f"report{index}.txt"])
        except SystemExit as e:
            if e.code:
                failures.put(f"round {round_}, worker {index}: exit {e.code}")
        barrier.wait()  # every run of this round is done
        held = {e.ident for e in lockfile.read(Path("l.lock"))}
        lost = sorted(expected(round_) - held)
        if lost:
            failures.put(f"round {round_}, worker {index}: lost {lost}")
        barrier.wait()  # every check is done before the next round writes


def test_concurrent_lock_runs_lose_no_entries(tmp_path: Path) -> None:
    from conftest import hang_guard  # here, not at the top: the workers need not import it

    for i in range(WORKERS):
        (tmp_path / f"s{i}.yaml").write_text(MLP, encoding="utf-8")
    lockfile.write(tmp_path / "l.lock", seed_entries())
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch
    barrier = context.Barrier(WORKERS)
    failures = context.Queue()
    processes = [context.Process(target=worker, args=(str(tmp_path), i, barrier, failures))
                 for i in range(WORKERS)]
    try:
        with hang_guard("four concurrent lock runs", seconds=60):
            for p in processes:
                p.start()
            for p in processes:
                p.join()
    finally:
        for p in processes:
            if p.is_alive():
                p.kill()
            p.join(timeout=10)
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert [p.exitcode for p in processes] == [0] * WORKERS, found
    assert found == []
    assert {e.ident for e in lockfile.read(tmp_path / "l.lock")} == expected(ROUNDS - 1)
