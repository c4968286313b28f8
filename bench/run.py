"""lazyspec's benchmark: one command, every figure side by side, on the machine it runs on.

    python bench/run.py            # about 5 minutes on 2 cores (LLaMA-7B on CPU is most of it)
    python bench/run.py --quick    # one run of each, no LLaMA-7B on CPU: about a minute

It prints four tables:

  1. startup: `python -c "import torch"` vs `lazyspec --help`, `--version` and
     `lazyspec infer specs/mlp.yaml --input 2,20`, each the median of several fresh processes;
  2. models: `lazyspec infer` on meta vs the same model written in plain PyTorch
     (bench/models.py) and summarised with torchinfo, built on CPU and on meta; wall time and peak
     RSS of the whole process, and their ratios;
  3. LLaMA-2 70B with lazyspec on meta: wall time and peak RSS (must stay under 1 GB);
  4. scaling: load + compile + dry run in one process (torch and lazyspec already imported) of
     generated synthetic specs of 100, 1,000 and 10,000 nodes; time per node and the ratio
     per-node(10,000) / per-node(1,000) (must be at most 1.5).

Every process is timed from its start to its exit, and its peak RSS is the kernel's ru_maxrss for
that child (os.wait4). torchinfo is installed if it is missing (`pip install -e '.[bench]'` does
the same); `--no-install` refuses instead.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))  # measure this checkout's lazyspec, whatever else is installed

from models import MODELS  # noqa: E402  (bench/models.py: imports nothing heavy at module level)

GB = 1_000_000_000
MIB = 1024 * 1024
LLAMA_70B_PARAMS = 68_976_648_192
STARTUP_LIMIT_S = 0.3  # --help, --version: "under about 0.3 s"
INFER_OVER_IMPORT = 1.25  # infer on the MLP within 1.25 x `python -c "import torch"`
PER_NODE_RATIO = 1.5  # time per node at 10,000 nodes over time per node at 1,000
SCALING_NODES = (100, 1_000, 10_000)


# --- running and measuring one process -----------------------------------------------------------


@dataclass
class Run:
    wall: float  # seconds, process start to exit
    rss: int  # peak resident set size, bytes (ru_maxrss of this child)
    code: int
    out: str
    err: str


def measure(cmd: Sequence[str], env: dict[str, str] | None = None) -> Run:
    """Run `cmd` in a fresh process; its wall time and its own peak RSS, via os.wait4.

    Linux starts a child's ru_maxrss at its parent's RSS (the memory it was forked from counts
    until exec), so this parent must stay small: it imports torch only for part 4, after every
    child has run.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Run(wall, usage.ru_maxrss * 1024, proc.returncode,
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    # the children import this checkout's lazyspec too (the console script included)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("COLUMNS", "120")
    return env


def lazyspec_cmd() -> list[str]:
    """The installed console script next to this interpreter (what a user types)."""
    for folder in (Path(sys.executable).parent, None):
        found = shutil.which("lazyspec", path=str(folder) if folder else None)
        if found:
            return [found]
    return [sys.executable, "-m", "lazyspec"]


def median_run(runs: list[Run]) -> Run:
    ok = [r for r in runs if r.code == 0] or runs
    return Run(statistics.median(r.wall for r in ok), int(statistics.median(r.rss for r in ok)),
               ok[0].code, ok[0].out, ok[0].err)


# --- printing ------------------------------------------------------------------------------------


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    keep = [i for i in range(len(header)) if any(row[i] for row in cells)]  # drop empty columns
    cells = [[row[i] for i in keep] for row in cells]
    header = cells[0]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        # first column left-aligned, the rest right-aligned (numbers)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    print(f"\n## {title}\n")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


def secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def mib(x: int | None) -> str:
    return "-" if x is None else f"{x / MIB:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def meminfo() -> dict[str, int]:
    info: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_describe() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, text=True,
                               capture_output=True, check=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def checkout_version() -> str:
    text = (ROOT / "lazyspec" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
    return match.group(1) if match else "?"


def own_rss() -> int:
    """This process's peak RSS, bytes: a floor under every child's figure (see measure)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine() -> None:
    """Describe the machine without importing torch here (see measure)."""
    mem = meminfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print("# lazyspec benchmark\n")
    print(f"machine:  {cpu_model()}, {cores} cores usable (nproc), "
          f"{mem.get('MemTotal', 0) / 2**30:.1f} GiB memory "
          f"({mem.get('MemAvailable', 0) / 2**30:.1f} GiB available), "
          f"swap {mem.get('SwapTotal', 0) / 2**30:.1f} GiB; load average {loadavg()}")
    print(f"software: {platform.platform()}, Python {platform.python_version()}, "
          f"torch {version('torch')}, torchinfo {version('torchinfo')}, "
          f"lazyspec {checkout_version()} ({git_describe()}) from {ROOT / 'lazyspec'}")
    print(f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}; "
          f"peak RSS is each child's own ru_maxrss (os.wait4); this parent, which starts them "
          f"and has not imported torch, holds {own_rss() / MIB:.0f} MiB")


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def processes(n: int) -> str:
    return f"{n} fresh process" + ("" if n == 1 else "es")


# --- 1. startup ----------------------------------------------------------------------------------


def startup(repeat: int) -> list[tuple[str, bool]]:
    ls = lazyspec_cmd()
    cmds = [
        ('python -c "import torch"', [sys.executable, "-c", "import torch"]),
        ("lazyspec --help", [*ls, "--help"]),
        ("lazyspec --version", [*ls, "--version"]),
        ("lazyspec infer specs/mlp.yaml --input 2,20",
         [*ls, "infer", "specs/mlp.yaml", "--input", "2,20"]),
    ]
    env = child_env()
    runs: dict[str, list[Run]] = {name: [] for name, _ in cmds}
    for name, cmd in cmds:  # warm the file cache and the .pyc files; not counted
        first = measure(cmd, env)
        if first.code != 0:
            print(f"\n{name} exited {first.code}:\n{first.err[-2000:]}")
    for _ in range(repeat):  # interleaved, so that drift in the machine hits every command
        for name, cmd in cmds:
            runs[name].append(measure(cmd, env))
    med = {name: median_run(r) for name, r in runs.items()}
    base = med['python -c "import torch"'].wall
    rows, checks = [], []
    for name, _ in cmds:
        r = med[name]
        lo = min(x.wall for x in runs[name])
        if name.startswith("lazyspec --"):
            ok = r.wall < STARTUP_LIMIT_S
            target = f"< {STARTUP_LIMIT_S} s: {verdict(ok)}"
            checks.append((f"{name} median {r.wall:.3f} s < {STARTUP_LIMIT_S} s", ok))
        elif name.startswith("lazyspec infer"):
            ok = r.wall <= INFER_OVER_IMPORT * base
            target = f"<= {INFER_OVER_IMPORT} x import torch: {verdict(ok)}"
            checks.append((f"infer on the MLP {r.wall / base:.2f} x import torch "
                           f"(<= {INFER_OVER_IMPORT})", ok))
        else:
            target = "(baseline)"
        rows.append([name, secs(r.wall), secs(lo), mib(r.rss), ratio(r.wall, base), target,
                     "" if r.code == 0 else f"exit {r.code}"])
    table(f"1. Startup: median of {processes(repeat)} each (after one warm-up run)",
          ["command", "wall s", "min s", "peak RSS MiB", "x import torch", "target", ""], rows)
    return checks


# --- 2. models -----------------------------------------------------------------------------------


def lazyspec_params(text: str) -> int | None:
    match = re.search(r"parameters:\s*([\d,]+)", text)
    return int(match.group(1).replace(",", "")) if match else None


def torchinfo_run(key: str, device: str, dtype: str,
                  repeat: int) -> tuple[Run | None, str, dict[str, Any]]:
    runs: list[Run] = []
    info: dict[str, Any] = {}
    problem = ""
    for _ in range(repeat):
        r = measure([sys.executable, str(ROOT / "bench" / "models.py"), key, device, dtype],
                    child_env())
        last = (r.out.strip().splitlines() or ["{}"])[-1]
        try:
            info = json.loads(last)
        except json.JSONDecodeError:
            info = {"error": (r.err.strip().splitlines() or [f"exit {r.code}"])[-1]}
        if r.code != 0 or "error" in info:
            problem = str(info.get("error") or f"exit {r.code}")
            return None, problem, info
        runs.append(r)
    return median_run(runs), problem, info


def fits_in_memory(params: int, bytes_per_param: int) -> tuple[bool, str]:
    need = params * bytes_per_param
    available = meminfo().get("MemAvailable", 0)
    margin = int(need * 0.15) + 2 * 2**30  # activations, torchinfo's hooks, the interpreter
    why = (f"needs {need / 2**30:.1f} GiB of parameters (+{margin / 2**30:.1f} GiB margin), "
           f"{available / 2**30:.1f} GiB available")
    return need + margin <= available, why


def models(repeat: int, llama_cpu: bool) -> list[tuple[str, bool]]:
    ls = lazyspec_cmd()
    rows: list[list[object]] = []
    notes: list[str] = []
    checks: list[tuple[str, bool]] = []
    for m in MODELS.values():
        runs = [measure([*ls, "infer", m.spec, "--input", m.input], child_env())
                for _ in range(repeat)]
        lz = median_run(runs)
        lz_params = lazyspec_params(lz.out) if lz.code == 0 else None
        if lz.code != 0:
            notes.append(f"{m.title}: lazyspec infer exited {lz.code}: "
                         f"{(lz.err.strip().splitlines() or ['?'])[0]}")
        rows.append([m.title, "lazyspec infer", "meta", "float32",
                     f"{lz_params:,}" if lz_params is not None else "fails",
                     secs(lz.wall), mib(lz.rss), "1.00", "1.00"])
        if m.key == "llama7b":
            ok = lz_params == m.params
            checks.append((f"LLaMA-2 7B: lazyspec counts {lz_params or 0:,} "
                           f"(published {m.params:,})", ok))
        for device in ("cpu", "meta"):
            dtype, times = "float32", repeat
            if device == "cpu":
                fits, why = fits_in_memory(m.params, 4)
                if not fits:
                    dtype, times = "bfloat16", 1
                    fits16, why16 = fits_in_memory(m.params, 2)
                    if not (fits16 and llama_cpu):
                        reason = why16 if not fits16 else "skipped (--quick or --no-llama-cpu)"
                        rows.append([m.title, "torchinfo", "cpu", "-", "skipped", "-", "-",
                                     "-", "-"])
                        notes.append(f"{m.title} on CPU skipped: in float32 it {why}; "
                                     f"in bfloat16: {reason}")
                        continue
                    notes.append(f"{m.title} on CPU is built in bfloat16 (one run): in float32 "
                                 f"it {why}; in bfloat16 it {why16}")
            run, problem, info = torchinfo_run(m.key, device, dtype, times)
            if run is None:
                rows.append([m.title, "torchinfo", device, dtype, "fails", "-", "-", "-", "-"])
                notes.append(f"{m.title}: torchinfo on {device} fails: {problem}")
                continue
            params = int(info.get("params", 0))
            rows.append([m.title, "torchinfo", device, dtype, f"{params:,}", secs(run.wall),
                         mib(run.rss), ratio(run.wall, lz.wall), ratio(run.rss, lz.rss)])
            if lz_params is not None and params != lz_params:
                notes.append(f"{m.title}: torchinfo on {device} counts {params:,} parameters, "
                             f"lazyspec {lz_params:,} (torchinfo counts a tied weight once per "
                             f"module that holds it)" if m.key == "gpt2" else
                             f"{m.title}: torchinfo on {device} counts {params:,}, "
                             f"lazyspec {lz_params:,}")
    table(f"2. Models: lazyspec vs torchinfo on the same model in plain PyTorch "
          f"(median of {processes(repeat)}; ratios are torchinfo / lazyspec)",
          ["model", "tool", "device", "dtype", "params", "wall s", "peak RSS MiB",
           "wall ratio", "RSS ratio"], rows)
    inputs = ", ".join(f"{m.title} {m.input}" for m in MODELS.values())
    print(f"\ninputs: {inputs}")
    for note in notes:
        print(f"note: {note}")
    return checks


# --- 3. LLaMA-2 70B ------------------------------------------------------------------------------


def llama70b(repeat: int) -> list[tuple[str, bool]]:
    ls = lazyspec_cmd()
    cmd = [*ls, "infer", "specs/llama2-70b.yaml", "--input", "1,64:int64"]
    runs = [measure(cmd, child_env()) for _ in range(repeat)]
    med = median_run(runs)
    peak = max(r.rss for r in runs)
    params = lazyspec_params(med.out) if med.code == 0 else None
    rss_ok = med.code == 0 and peak < GB
    count_ok = params == LLAMA_70B_PARAMS
    table(f"3. LLaMA-2 70B with lazyspec on meta (median of {processes(repeat)})",
          ["command", "params", "wall s", "peak RSS MiB", "peak RSS < 1 GB"],
          [["lazyspec infer specs/llama2-70b.yaml --input 1,64:int64",
            f"{params:,}" if params is not None else f"fails (exit {med.code})",
            secs(med.wall), mib(peak), verdict(rss_ok)]])
    if med.code != 0:
        print(f"\n{med.err[-2000:]}")
    print(f"\npeak RSS (highest of the runs): {peak:,} bytes = {peak / GB:.3f} GB; "
          f"parameters at float32 would be {LLAMA_70B_PARAMS * 4 / GB:,.0f} GB")
    return [(f"LLaMA-2 70B peak RSS {peak / GB:.3f} GB < 1 GB", rss_ok),
            (f"LLaMA-2 70B: lazyspec counts {params or 0:,} (published "
             f"{LLAMA_70B_PARAMS:,})", count_ok)]


# --- 4. scaling ----------------------------------------------------------------------------------

SYNTHETIC = """\
# generated by bench/run.py: {blocks} residual blocks of 4 layers, {nodes} nodes
lazyspec: 1
name: synthetic {nodes} nodes
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


def scaling(repeat: int) -> list[tuple[str, bool]]:
    # Imported only now: a parent holding torch would inflate every child's ru_maxrss above.
    t0 = time.perf_counter()
    import torch

    import lazyspec
    imported = time.perf_counter() - t0

    def once(path: Path) -> tuple[float, int]:
        gc.collect()
        start = time.perf_counter()
        result = lazyspec.load(path).infer("2,64")
        elapsed = time.perf_counter() - start
        return elapsed, len(result.nodes)

    rows, per_node = [], {}
    with tempfile.TemporaryDirectory(prefix="lazyspec-bench-") as folder:
        paths = {}
        for n in SCALING_NODES:
            blocks = n // 5  # each block: the block node and its 4 layers
            paths[n] = Path(folder) / f"synthetic-{n}.yaml"
            paths[n].write_text(SYNTHETIC.format(blocks=blocks, nodes=n), encoding="utf-8")
        cold, _ = once(paths[SCALING_NODES[0]])  # first run pays one-time costs: not counted
        for n in SCALING_NODES:
            times, nodes = [], 0
            for _ in range(repeat):
                elapsed, nodes = once(paths[n])
                times.append(elapsed)
            t = statistics.median(times)
            per_node[n] = t / nodes
            rows.append([f"{n:,} ({n // 5:,} blocks)", f"{nodes:,}", secs(t), secs(min(times)),
                         f"{per_node[n] * 1e6:,.0f}", ""])
    base = per_node[1_000]
    for row, n in zip(rows, SCALING_NODES, strict=True):
        row[-1] = ratio(per_node[n], base)
    table(f"4. Scaling: load + compile + dry run on meta, in process, torch already imported "
          f"(median of {repeat})",
          ["synthetic spec", "nodes", "time s", "min s", "us per node",
           "per node / per node at 1,000"], rows)
    r = per_node[10_000] / base
    ok = r <= PER_NODE_RATIO
    print(f"\nimport torch + lazyspec (excluded): {imported:.3f} s ({torch.get_num_threads()} "
          f"torch threads); first (cold) run of the "
          f"{SCALING_NODES[0]}-node spec (excluded): {cold:.3f} s")
    print(f"per node at 10,000 / per node at 1,000 = {r:.2f} (<= {PER_NODE_RATIO}: "
          f"{verdict(ok)}); at 100 / at 1,000 = {per_node[100] / base:.2f}")
    return [(f"time per node at 10,000 nodes {r:.2f} x that at 1,000 (<= {PER_NODE_RATIO})",
             ok)]


# --- main ----------------------------------------------------------------------------------------


def ensure_torchinfo(install: bool) -> None:
    if importlib.util.find_spec("torchinfo") is not None:
        return
    if not install:
        sys.exit("bench/run.py needs torchinfo: pip install -e '.[bench]' (or pip install "
                 "torchinfo)")
    print("torchinfo is missing: installing it (python -m pip install 'torchinfo>=1.8'; "
          "pip install -e '.[bench]' does the same)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "torchinfo>=1.8"], check=True)
    importlib.invalidate_caches()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one run of each measurement, no LLaMA-7B on CPU")
    parser.add_argument("--repeat", type=int, default=3,
                        help="fresh processes per model measurement (default 3)")
    parser.add_argument("--startup-repeat", type=int, default=7,
                        help="fresh processes per startup command (default 7)")
    parser.add_argument("--no-llama-cpu", action="store_true",
                        help="skip torchinfo on LLaMA-7B built on CPU (bfloat16, ~14 GB, ~1 min)")
    parser.add_argument("--no-install", action="store_true",
                        help="do not pip install torchinfo when it is missing")
    parser.add_argument("--only", choices=["startup", "models", "70b", "scaling"],
                        action="append", help="run only these parts (repeatable)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.startup_repeat, args.no_llama_cpu = 1, 3, True
    ensure_torchinfo(not args.no_install)
    started = time.perf_counter()
    machine()
    parts = args.only or ["startup", "models", "70b", "scaling"]
    checks: list[tuple[str, bool]] = []
    if "startup" in parts:
        checks += startup(args.startup_repeat)
    if "models" in parts:
        checks += models(args.repeat, not args.no_llama_cpu)
    if "70b" in parts:
        checks += llama70b(args.repeat)
    if "scaling" in parts:
        checks += scaling(args.repeat)
    print("\n## Summary\n")
    for text, ok in checks:
        print(f"{verdict(ok)}  {text}")
    print(f"\ntotal benchmark time: {time.perf_counter() - started:.0f} s; "
          f"load average at the end {loadavg()}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
