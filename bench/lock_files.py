"""How long lazyspec takes over large and hostile lock files (issue 9, item 4). Prints figures.

    python bench/lock_files.py          # about a minute on 2 cores

1. Reading, in one process (lazyspec imported, torch not): this repository's lock with the line
   reader (the form `lazyspec lock` writes) and with the strict YAML reader (any other form), an
   8 MB and a 16 MB (the cap) lock as `lazyspec lock` writes them, and a hand-edited one
   through the YAML reader (500 KB, its cap).
2. Whole commands, each a fresh process (wall time and peak RSS, torch import included):
   `lazyspec check m.yaml --lock L` (m.yaml: the MLP) with L a lock holding only its entry (the
   baseline: torch's import and the dry run), an 8 MB lock (the issue's "runs for minutes"),
   a link to /dev/zero (was 5 GB of RSS and a MemoryError), and a 24 KB entry listing 3,000 input
   sets (was 3,000 dry runs, 53 s).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's lazyspec

from lazyspec import lock as lockfile  # noqa: E402

REPO_LOCK = ROOT / "lazyspec.lock"


def best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def lock_of(size: int, spec: str = "specs/mlp.yaml") -> str:
    """A lock as `lazyspec lock` writes it, of at most about `size` bytes: this repository's
    entries copied under other spec names, plus specs/mlp.yaml's own (named `spec`)."""
    base = lockfile.read(REPO_LOCK)
    entries = [_renamed(e, spec) for e in base if e.spec == "specs/mlp.yaml"]
    total = len(lockfile.render(entries))
    copies = 0
    while True:
        for e in base:
            twin = _renamed(e, f"copies/{copies}/{e.spec}")
            grows = len(lockfile.render([twin])) - len(lockfile.render([]))
            if total + grows > size:
                return lockfile.render(entries)
            entries.append(twin)
            total += grows
        copies += 1


def _renamed(entry: lockfile.LockEntry, spec: str) -> lockfile.LockEntry:
    twin = copy.copy(entry)
    twin.spec = spec
    return twin


def reading() -> None:
    text = REPO_LOCK.read_text(encoding="utf-8")
    print("1. reading a lock file (in process, best of 3)")
    print(f"  this repository's lock ({len(text) / 1e3:.0f} KB), line reader: "
          f"{best_of(3, lambda: lockfile.parse(text, REPO_LOCK)):.3f} s")
    print(f"  this repository's lock, strict YAML reader: "
          f"{best_of(3, lambda: lockfile._yaml(text, REPO_LOCK)):.3f} s")
    for size in (8_000_000, lockfile.MAX_LOCK_BYTES):
        big = lock_of(size)
        seconds = best_of(3, lambda big=big: lockfile.parse(big, REPO_LOCK))  # type: ignore[misc]
        print(f"  {len(big) / 1e6:.1f} MB as `lazyspec lock` writes it: {seconds:.2f} s")
    edited = "# edited by hand\n" + lock_of(lockfile.MAX_EDITED_LOCK_BYTES - 100) \
        .split("\n", 1)[1]
    print(f"  {len(edited) / 1e3:.0f} KB edited by hand (strict YAML reader, its cap): "
          f"{best_of(1, lambda: lockfile.parse(edited, REPO_LOCK)):.2f} s")


def command(folder: Path, lock: Path) -> tuple[float, int, int]:
    """Wall time, exit code and peak RSS (bytes) of `lazyspec check m.yaml --lock L` in
    `folder` (no pyproject.toml: the runs come from the lock's entries)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "lazyspec", "check", "m.yaml", "--lock",
                                str(lock)], cwd=folder, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024


def commands(folder: Path) -> None:
    (folder / "m.yaml").write_text((ROOT / "specs" / "mlp.yaml").read_text(encoding="utf-8"),
                                   encoding="utf-8")
    small = folder / "small.lock"
    small.write_text(lock_of(0, "m.yaml"), encoding="utf-8")
    eight = folder / "eight.lock"
    eight.write_text(lock_of(8_000_000, "m.yaml"), encoding="utf-8")
    zero = folder / "zero.lock"
    zero.symlink_to("/dev/zero")
    mlp = _renamed(next(e for e in lockfile.read(REPO_LOCK) if e.spec == "specs/mlp.yaml"),
                   "m.yaml")
    mlp.inputs = ["2,20"] * 3000
    inputs = folder / "inputs.lock"
    inputs.write_text(lockfile.render([mlp]), encoding="utf-8")
    print("2. `lazyspec check m.yaml --lock L` (m.yaml: specs/mlp.yaml), a fresh process each")
    cases = [("baseline: a lock with only m.yaml's entry", small), ("8 MB lock", eight),
             ("link to /dev/zero", zero),
             (f"entry with 3,000 input sets ({inputs.stat().st_size / 1e3:.0f} KB)", inputs)]
    for name, path in cases:
        seconds, code, rss = command(folder, path)
        print(f"  {name}: {seconds:.1f} s, exit {code}, peak RSS {rss / 2**20:.0f} MiB")


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    reading()
    with tempfile.TemporaryDirectory() as folder:
        commands(Path(folder))


if __name__ == "__main__":
    main()
