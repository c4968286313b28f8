"""Figures for the limits that keep a hostile spec's work bounded (issue 9), measured here.

    python bench/hostile.py                    # ~4 minutes on 2 cores
    python bench/hostile.py --quick            # one run of each: ~2 minutes
    python bench/hostile.py --before 612ce5a   # the symbolic table also for that commit

1. Refusals: `lazyspec infer` and `show` of one op that asks for an unbounded model
   (`RNN(8, 8, num_layers=200000)`, `Transformer(num_encoder_layers=20000)`): each a fresh
   process (its time is mostly `import torch`), and the build alone in process.
2. The limits: `lazyspec infer` of a spec at the node limit (the residual blocks of bench/run.py,
   as many as fit) and of one at the model's limit on what constructors create (encoder layers).
3. Symbolic shapes: `infer` of a 36-layer conv/batch-norm/ReLU/pool stack with `--input B,3,H,W`
   against `--input 2,3,64,64`; with `--before REV`, the same for that commit of lazyspec.
4. Memory: what the real-run pre-check reads here (MemAvailable, cgroup limits) and uses.

Times are wall (median of the runs) and CPU (user + system of the child), since other load on
a shared machine stretches wall time; the header prints the load average. Exit 0 when every
target holds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's lazyspec, whatever is installed

REFUSE_TARGET = 1.5  # seconds of CPU from the start of the build to the refusal
LIMIT_TARGET = 40.0  # seconds of CPU for a whole `infer` of a spec at a limit
SYMBOLIC_TARGET = 2.0  # symbolic run / concrete run

RNN = "layers:\n  - RNN(8, 8, num_layers=200000)\n"
TRANSFORMER = ("layers:\n  - Transformer(d_model=64, nhead=4, num_encoder_layers=20000, "
               "num_decoder_layers=2, dim_feedforward=128)\n")
RESIDUAL = """\
params: {{d: 64, n_blocks: {blocks}}}
blocks:
  Residual:
    params: {{d: 64}}
    layers:
      - norm: RMSNorm(d)
      - fc: LazyLinear(d)
      - act: SiLU
      - sum: Add
        in: [input, act]
layers:
  - blocks: Residual(d)
    repeat: n_blocks
"""
ENCODER = ("layers:\n  - op: TransformerEncoderLayer(64, 4, 128, batch_first=true)\n"
           "    repeat: {n}\n")


def conv_stack() -> str:
    lines = ["name: 36-layer conv/pool stack", "layers:"]
    for i in range(9):
        lines += ["  - LazyConv2d(16, 3, padding=1)", "  - BatchNorm2d(16)", "  - ReLU",
                  "  - MaxPool2d(2)" if i % 2 == 0 else "  - MaxPool2d(3, stride=1, padding=1)"]
    return "\n".join(lines) + "\n"


@dataclass
class Run:
    wall: float
    cpu: float  # user + system seconds of the child
    code: int
    err: str


def measure(cmd: Sequence[str], root: Path = ROOT) -> Run:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "PYTHONPATH": str(root)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "lazyspec", *cmd], stdout=out,
                                stderr=err, env=env, cwd=root)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(0)
        return Run(wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status),
                   err.read().decode(errors="replace"))


def median(runs: list[Run]) -> Run:
    return Run(statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs),
               runs[0].code, runs[0].err)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n## {title}\n")
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def first_error(err: str) -> str:
    line = next((x for x in err.splitlines() if "error[" in x), err.strip()[:100])
    return line.split(": error", 1)[-1][:110]


# --- 1. refusals ---------------------------------------------------------------------------------


def refusals(folder: Path, repeat: int) -> list[tuple[str, bool]]:
    rows, checks = [], []
    for name, text in (("RNN(num_layers=200000)", RNN),
                       ("Transformer(num_encoder_layers=20000)", TRANSFORMER)):
        spec = folder / f"{name.split('(')[0].lower()}.yaml"
        spec.write_text(text, encoding="utf-8")
        in_process = build_seconds(spec)
        checks.append((f"{name}: build refused after {in_process:.2f} s CPU "
                       f"(<= {REFUSE_TARGET} s)", in_process <= REFUSE_TARGET))
        for command in (["infer", str(spec), "--input", "2,4,8"], ["show", str(spec)]):
            run = median([measure(command) for _ in range(repeat)])
            rows.append([name, command[0], f"{run.wall:.2f}", f"{run.cpu:.2f}",
                         f"{in_process:.2f}", run.code, first_error(run.err)])
    table(f"1. Refusing one op that asks for an unbounded model (median of {repeat})",
          ["op", "command", "wall s", "CPU s", "build alone s", "exit", "message"], rows)
    return checks


def build_seconds(spec: Path) -> float:
    """CPU seconds from the start of the build to its refusal, torch already imported."""
    import lazyspec  # noqa: F401  (imports torch: after the fresh-process runs)
    from lazyspec.compile import BuildOptions, build
    from lazyspec.errors import SpecError
    from lazyspec.spec.parse import parse_file

    warm = spec.with_name("warm.yaml")  # torch's one-time costs of a first build: not counted
    warm.write_text("layers:\n  - LazyLinear(4)\n  - RNN(4, 4)\n", encoding="utf-8")
    build(parse_file(warm), BuildOptions())
    parsed = parse_file(spec)
    start = time.process_time()
    with contextlib.suppress(SpecError):
        build(parsed, BuildOptions())
    return time.process_time() - start


# --- 2. specs at the limits ----------------------------------------------------------------------


def limits(folder: Path) -> list[tuple[str, bool]]:
    from lazyspec.options import MAX_MODEL_TENSORS, MAX_NODES

    blocks = (MAX_NODES - 1) // 5  # a block call and its 4 layers, plus the repeating node
    layers = MAX_MODEL_TENSORS // 21  # an encoder layer creates 21 modules and tensors
    specs = [(f"{1 + 5 * blocks:,} nodes (node limit {MAX_NODES:,})", "nodes.yaml",
              RESIDUAL.format(blocks=blocks), "2,64"),
             (f"{layers:,} encoder layers, {21 * layers:,} modules and tensors "
              f"(limit {MAX_MODEL_TENSORS:,})", "encoders.yaml", ENCODER.format(n=layers),
              "2,16,64")]
    rows, checks = [], []
    for what, name, text, shape in specs:
        (folder / name).write_text(text, encoding="utf-8")
        run = measure(["infer", str(folder / name), "--input", shape])
        rows.append([what, f"{run.wall:.1f}", f"{run.cpu:.1f}", run.code])
        checks.append((f"infer at the limit, {what}: {run.cpu:.1f} s CPU (<= {LIMIT_TARGET} s), "
                       f"exit {run.code}", run.cpu <= LIMIT_TARGET and run.code == 0))
    table("2. `lazyspec infer` of a spec at each limit (one run)",
          ["spec", "wall s", "CPU s", "exit"], rows)
    return checks


# --- 3. symbolic shapes --------------------------------------------------------------------------


def symbolic(folder: Path, repeat: int, before: str | None) -> list[tuple[str, bool]]:
    spec = folder / "convs.yaml"
    spec.write_text(conv_stack(), encoding="utf-8")
    roots = [("this checkout", ROOT)]
    if before:
        roots.insert(0, (f"before ({before})", export_commit(before, folder / "before")))
    rows, checks = [], []
    for label, root in roots:
        runs: dict[str, list[Run]] = {"concrete": [], "symbolic": []}
        for _ in range(repeat):  # interleaved, so that load changes hit both alike
            runs["concrete"].append(measure(["infer", str(spec), "--input", "2,3,64,64"], root))
            runs["symbolic"].append(measure(["infer", str(spec), "--input", "B,3,H,W"], root))
        c, s = median(runs["concrete"]), median(runs["symbolic"])
        rows.append([label, f"{c.wall:.2f}", f"{c.cpu:.2f}", f"{s.wall:.2f}", f"{s.cpu:.2f}",
                     f"{s.wall / c.wall:.2f}", f"{s.cpu / c.cpu:.2f}"])
        if root == ROOT:
            checks.append((f"symbolic / concrete run: {s.cpu / c.cpu:.2f} x in CPU, "
                           f"{s.wall / c.wall:.2f} x in wall time (<= {SYMBOLIC_TARGET})",
                           s.cpu / c.cpu <= SYMBOLIC_TARGET))
    table(f"3. Symbolic shapes: `infer` of a 36-layer conv/pool stack (median of {repeat})",
          ["lazyspec", "concrete wall s", "CPU s", "B,3,H,W wall s", "CPU s", "ratio wall",
           "ratio CPU"], rows)
    return checks


def export_commit(rev: str, folder: Path) -> Path:
    """That commit's files (git archive), to run its lazyspec."""
    folder.mkdir()
    archive = folder / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


# --- 4. memory -----------------------------------------------------------------------------------


def memory() -> None:
    from lazyspec.memory import memory_figures

    figures = memory_figures()
    rows: list[list[object]] = [["MemAvailable (/proc/meminfo)", gib(figures.mem_available)]]
    for level in figures.cgroups:
        rows.append([f"cgroup {level.path}: limit {gib(level.limit)}, used {gib(level.usage)}",
                     gib(level.room)])
    if not figures.cgroups:
        rows.append(["cgroup memory limit (v2 memory.max, v1 memory.limit_in_bytes)",
                     "none set"])
    rows.append(["used by the real-run pre-check (the smallest)", gib(figures.available)])
    table("4. Memory the real-run pre-check sees here", ["figure", "free"], rows)


def gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**30:,.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each measurement")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per figure")
    parser.add_argument("--before", metavar="REV", help="also time the symbolic table at REV")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    print(f"# lazyspec hostile-spec limits: {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="lazyspec-hostile-") as tmp:
        folder = Path(tmp)
        checks = symbolic(folder, repeat, args.before)  # first: no torch in this process yet
        checks += refusals(folder, repeat)
        checks += limits(folder)
    memory()
    print("\n## Summary\n")
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
