"""The engine in a long-running process: many successive runs of one spec in one process, as a
watcher or a language server would make them.

    python bench/repeat.py                 # 1,000 runs of ResNet-18 at 1,3,224,224 (~3 min)
    python bench/repeat.py --runs 200      # fewer
    python bench/repeat.py --spec specs/mlp.yaml --input 2,20

It prints the time per run and the resident memory (RSS, from /proc/self/statm) after run 10 and
after the last run; the target is growth under 20 MB between the two. It also edits a spec and
its include between two runs and checks that the second run sees both edits (exit 1 if not).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure this checkout's lazyspec, whatever else is installed

from lazyspec import engine  # noqa: E402
from lazyspec.inputs import parse_input  # noqa: E402

GROWTH_LIMIT_MB = 20.0


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def repeat(spec: Path, inputs: list[str], runs: int) -> tuple[float, float, float]:
    """Seconds per run, and RSS after run 10 and after the last one."""
    request = engine.Request(spec, inputs=tuple(parse_input(i) for i in inputs))
    at_10 = 0.0
    start = time.perf_counter()
    for i in range(1, runs + 1):
        outcome = engine.run(request)
        if outcome.error is not None:
            raise SystemExit(f"run {i} failed: {outcome.error}")
        del outcome
        if i == 10:
            at_10 = rss_mb()
            start = time.perf_counter()
    per_run = (time.perf_counter() - start) / max(runs - 10, 1)
    return per_run, at_10, rss_mb()


def edits_are_seen() -> bool:
    """Run, edit the spec and its include, run again in the same process: both edits show."""
    with tempfile.TemporaryDirectory() as folder:
        spec, include = Path(folder, "m.yaml"), Path(folder, "widths.yaml")
        spec.write_text("include: [widths.yaml]\nlayers:\n  - LazyLinear(d)\n")
        include.write_text("params: {d: 8}\n")
        request = engine.Request(spec, inputs=(parse_input("2,4"),))
        first = engine.run(request).result
        include.write_text("params: {d: 16}\n")
        second = engine.run(request).result
        spec.write_text("include: [widths.yaml]\nlayers:\n  - LazyLinear(d)\n  - LazyLinear(3)\n")
        third = engine.run(request).result
    return (first is not None and second is not None and third is not None
            and first.outputs == [(2, 8)] and second.outputs == [(2, 16)]
            and third.outputs == [(2, 3)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "resnet18.yaml")
    parser.add_argument("--input", action="append", default=None)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    inputs = args.input or ["1,3,224,224"]
    runs = max(args.runs, 11)
    per_run, at_10, at_end = repeat(args.spec, inputs, runs)
    growth = at_end - at_10
    seen = edits_are_seen()
    print(f"{args.spec.name} {' '.join(inputs)}: {runs} runs in one process")
    print(f"  time per run (runs 11..{runs}): {per_run * 1e3:,.1f} ms")
    print(f"  RSS after run 10: {at_10:,.1f} MB; after run {runs}: {at_end:,.1f} MB; "
          f"growth {growth:+,.1f} MB (target < {GROWTH_LIMIT_MB:.0f} MB): "
          f"{'PASS' if growth < GROWTH_LIMIT_MB else 'FAIL'}")
    print(f"  a spec and its include edited between runs are read again: "
          f"{'PASS' if seen else 'FAIL'}")
    return 0 if growth < GROWTH_LIMIT_MB and seen else 1


if __name__ == "__main__":
    raise SystemExit(main())
