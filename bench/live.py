"""The long-running modes: `--watch` latency, the language server's latency, `check -j`.

    python bench/live.py            # ~6-8 min on 2 cores
    python bench/live.py --quick    # fewer edits and re-runs: ~2-3 min

Prints four tables and a PASS/FAIL summary (exit 1 if a target fails):

1. Watch latency: `lazyspec infer SPEC --watch` on a copy of the MLP, ResNet-18 and GPT-2; each
   edit rewrites the spec (a comment changes) and the time is from just before the write to the
   moment the status line after the redrawn report is read from the process's output. Targets
   (medians): MLP under 100 ms, ResNet-18 under 300 ms.
2. Memory of the long-running modes: the resident memory (RSS) of the watching process after
   re-run 10 and after the last re-run of the MLP (default 1,000 re-runs), and of the language
   server's worker after edit 10 and after the last edit. Target: growth under 20 MB.
3. LSP: `lazyspec lsp` driven over stdio by pygls's client: from `didChange` to the
   `publishDiagnostics` of that version (it includes the server's 100 ms debounce), for the MLP
   and ResNet-18; and on LLaMA-2 70B, two edits half a second apart, the second while the first
   runs: which versions were published (the first must not be) and the second's latency.
4. `lazyspec check` on this repository's bundled runs with `-j 1` and `-j 2`: wall time, the
   speed-up, and whether both printed the same bytes and exit code.

It measures the lazyspec of its checkout (PYTHONPATH points at it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="120")
ENV.pop("LAZYSPEC_JOBS", None)
GROWTH_LIMIT_MB = 20.0
WATCHED = [("mlp.yaml", "2,20", 100.0), ("resnet18.yaml", "2,3,224,224", 300.0),
           ("gpt2.yaml", "2,64:int64", None)]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[tuple[int, int, str]]:
    """(pid, depth, role) of every process under `pid`; the role of a forked worker is
    `worker` (it runs the engine: it has torch loaded and a parent that is the fork server)."""
    out, todo = [], [(c, 1) for c in children(pid)]
    while todo:
        child, depth = todo.pop()
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        role = "worker" if depth == 2 and b"forkserver" in cmdline else "helper"
        out.append((child, depth, role))
        todo += [(c, depth + 1) for c in children(child)]
    return out


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds of a process and everything under it, sampled until it ends (workers are
    reaped by a fork server, not by the process: its own accounting leaves them out)."""
    seen: dict[int, float] = {}
    while process.poll() is None:
        for pid in [process.pid, *(d[0] for d in descendants(process.pid))]:
            seen[pid] = max(seen.get(pid, 0.0), cpu_seconds(pid))
        time.sleep(0.1)
    return sum(seen.values())


def summary(ms: list[float]) -> str:
    ordered = sorted(ms)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (f"median {statistics.median(ms):7.1f} ms   p90 {p90:7.1f}   min {ordered[0]:7.1f}"
            f"   max {ordered[-1]:7.1f}   (n={len(ms)})")


# --- 1 and 2: watch ---------------------------------------------------------------------------


class Watching:
    """`lazyspec infer SPEC --watch` with its output read line by line."""

    def __init__(self, spec: Path, shape: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lazyspec", "infer", spec.name, "--input", shape, "--watch"],
            cwd=spec.parent, env=ENV, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def status(self, timeout: float = 300) -> tuple[str, str]:
        """The next status line, and what came before it."""
        got = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise SystemExit("the watching process ended:\n" + "".join(got))
            if line.startswith("lazyspec: watching"):
                return line, "".join(got)
            got.append(line)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def edit_and_wait(w: Watching, spec: Path, text: str, i: int) -> tuple[float, float]:
    """Milliseconds from the write to the status line read, and the run and redraw's own
    milliseconds as the status line gives them."""
    started = time.perf_counter()
    spec.write_text(f"{text}# edit {i}\n")
    line, shown = w.status()
    if "error[" in shown:
        raise SystemExit(f"the re-run failed:\n{shown}")
    own = float(line.split("ran in ")[1].split(" ms")[0].replace(",", ""))
    return (time.perf_counter() - started) * 1e3, own


def watch_latency(folder: Path, name: str, shape: str, edits: int, rss_runs: int = 0,
                  ) -> tuple[list[tuple[float, float]], tuple[float, float] | None]:
    spec = folder / name
    text = spec.read_text()
    w = Watching(spec, shape)
    try:
        w.status()
        times = []
        for i in range(edits):
            time.sleep(0.15)  # separate edits: each is one save, not one burst
            times.append(edit_and_wait(w, spec, text, i))
        rss = None
        if rss_runs:
            at_10 = 0.0
            for i in range(rss_runs):
                edit_and_wait(w, spec, text, edits + i)
                if i == 9:
                    at_10 = rss_mb(w.process.pid)
            rss = (at_10, rss_mb(w.process.pid))
        return times, rss
    finally:
        w.stop()


# --- 3: the language server -----------------------------------------------------------------------


async def lsp_figures(folder: Path, edits: int, rss_edits: int) -> dict[str, Any]:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("bench", "1")
    published: list[types.PublishDiagnosticsParams] = []
    arrived = asyncio.Event()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        published.append(params)
        arrived.set()

    await client.start_io(sys.executable, "-m", "lazyspec", "lsp", env=ENV, cwd=str(folder))
    drain = asyncio.ensure_future(_drain(client))
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                         root_uri=folder.as_uri()))
    client.initialized(types.InitializedParams())

    async def wait(uri: str, version: int) -> types.PublishDiagnosticsParams:
        while True:
            for p in published:
                if p.uri == uri and p.version == version:
                    return p
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 300)

    def change(uri: str, version: int, text: str) -> None:
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [types.TextDocumentContentChangeWholeDocument(text=text)]))

    def open_(name: str) -> tuple[str, str]:
        path = folder / name
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(path.as_uri(), "yaml", 1, path.read_text())))
        return path.as_uri(), path.read_text()

    out: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        uri, text = open_("mlp.yaml")
        await wait(uri, 1)
        out["first"] = time.perf_counter() - started
        for name, n in (("mlp.yaml", edits), ("resnet18.yaml", max(edits // 2, 3))):
            if name != "mlp.yaml":
                uri, text = open_(name)
                await wait(uri, 1)
            times = []
            for i in range(n):
                await asyncio.sleep(0.15)
                started = time.perf_counter()
                change(uri, i + 2, f"{text}# edit {i}\n")
                found = await wait(uri, i + 2)
                assert not found.diagnostics, found.diagnostics
                times.append((time.perf_counter() - started) * 1e3)
            out[name] = times
        mlp = (folder / "mlp.yaml").as_uri(), (folder / "mlp.yaml").read_text()
        out["rss"] = await _lsp_rss(client, *mlp, edits + 1, rss_edits, change, wait)
        out["supersede"] = await _supersede(open_, change, wait, published)
    finally:
        await asyncio.wait_for(client.shutdown_async(None), 60)
        client.exit(None)
        await asyncio.wait_for(client.stop(), 60)
        drain.cancel()
    return out


async def _drain(client: Any) -> None:
    while await client._server.stderr.readline():
        pass


async def _lsp_rss(client: Any, uri: str, text: str, version: int, edits: int, change: Any,
                   wait: Any) -> tuple[float, float, int] | None:
    """The worker's RSS after edit 10 and after the last of `edits` edits of the open spec."""
    if not edits:
        return None
    # the worker is forked by the fork server, itself a child of the server
    [worker] = [c for c in descendants(client._server.pid) if c[1] == 2 and c[2] == "worker"]
    worker = worker[0]
    at_10 = 0.0
    for i in range(edits):
        version += 1
        change(uri, version, f"{text}# edit again {i}\n")
        await wait(uri, version)
        if i == 9:
            at_10 = rss_mb(worker)
    return at_10, rss_mb(worker), edits


async def _supersede(open_: Any, change: Any, wait: Any, published: list[Any]) -> dict[str, Any]:
    """Two edits of LLaMA-2 70B half a second apart: the first is still running."""
    uri, text = open_("llama2-70b.yaml")
    await wait(uri, 1)
    change(uri, 2, text + "# first edit\n")
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    change(uri, 3, text + "# second edit\n")
    await wait(uri, 3)
    latency = time.perf_counter() - started
    await asyncio.sleep(1.0)  # a late result for version 2 would show up here
    versions = [p.version for p in published if p.uri == uri]
    return {"versions": versions, "latency": latency}


# --- 4: check -j ---------------------------------------------------------------------------


def check_jobs(repeat: int) -> dict[int, tuple[float, float, float, int, bytes]]:
    """Per -j: the best wall time, its CPU seconds (the process and its workers), the load
    average before it, the exit code and the output."""
    out: dict[int, tuple[float, float, float, int, bytes]] = {}
    for _ in range(repeat):
        for jobs in (1, 2):
            load = os.getloadavg()[0]
            with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
                started = time.perf_counter()
                p = subprocess.Popen([sys.executable, "-m", "lazyspec", "check", "-j",
                                      str(jobs)], cwd=ROOT, env=ENV, stdout=so, stderr=se)
                cpu = tree_cpu(p)
                wall = time.perf_counter() - started
                so.seek(0)
                se.seek(0)
                output = so.read() + b"\0" + se.read()
            best = out.get(jobs)
            if best is None or wall < best[0]:
                out[jobs] = (wall, cpu, load, p.returncode, output)
    return out


# --- the report ---------------------------------------------------------------------------


def header() -> None:
    import platform

    load = os.getloadavg()
    print(f"lazyspec live bench: {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer edits and re-runs")
    parser.add_argument("--rss-runs", type=int, default=None,
                        help="re-runs of the MLP for the memory figure (default 1,000)")
    parser.add_argument("--only", choices=("watch", "lsp", "jobs"), default=None,
                        help="one of the measurements")
    args = parser.parse_args()
    edits = 8 if args.quick else 30
    rss_runs = args.rss_runs if args.rss_runs is not None else (200 if args.quick else 1000)
    header()
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for f in (ROOT / "specs").iterdir():
            shutil.copy(f, folder / f.name)
        (folder / "pyproject.toml").write_text(
            "[tool.lazyspec]\n" + "".join(
                f"[[tool.lazyspec.run]]\nspec = '{n}'\ninputs = ['{s}']\n"
                for n, s, _ in [*WATCHED, ("llama2-70b.yaml", "2,64:int64", None)]))
        if args.only in (None, "watch"):
            failed += _watch_table(folder, edits, rss_runs)
        if args.only in (None, "lsp"):
            failed += _lsp_table(folder, edits, rss_runs // 4)
    if args.only in (None, "jobs"):
        failed += _jobs_table(1 if args.quick else 2)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("SUMMARY: " + ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
    return 1 if failed else 0


def _watch_table(folder: Path, edits: int, rss_runs: int) -> list[str]:
    failed = []
    print("\n1. watch: save -> redrawn result (lazyspec infer SPEC --watch)")
    rss = None
    for name, shape, target in WATCHED:
        n = edits if name == "mlp.yaml" else max(edits // 3, 3)
        pairs, got = watch_latency(folder, name, shape, n,
                                   rss_runs if name == "mlp.yaml" else 0)
        rss = rss or got
        times, own = [t for t, _ in pairs], [o for _, o in pairs]
        verdict = ""
        if target is not None:
            ok = statistics.median(times) < target
            verdict = f"  target < {target:.0f} ms: {'pass' if ok else 'FAIL'}"
            if not ok:
                failed.append(f"watch {name}")
        print(f"  {name:15} {shape:14} {summary(times)}{verdict}")
        print(f"  {'':15} {'':14} of which the run and the redraw: median "
              f"{statistics.median(own):.0f} ms")
    print("\n2. memory across re-runs")
    if rss is not None:
        growth = rss[1] - rss[0]
        print(f"  watch, MLP: RSS after re-run 10 {rss[0]:.1f} MB, after re-run {rss_runs:,} "
              f"{rss[1]:.1f} MB: growth {growth:+.1f} MB (target < {GROWTH_LIMIT_MB:.0f}): "
              f"{'pass' if growth < GROWTH_LIMIT_MB else 'FAIL'}")
        if growth >= GROWTH_LIMIT_MB:
            failed.append("watch memory")
    return failed


def _lsp_table(folder: Path, edits: int, rss_edits: int) -> list[str]:
    failed = []
    got = asyncio.run(lsp_figures(folder, edits, rss_edits))
    if got["rss"] is not None:
        at_10, at_end, n = got["rss"]
        growth = at_end - at_10
        print(f"  lsp worker, MLP: RSS after edit 10 {at_10:.1f} MB, after edit {n:,} "
              f"{at_end:.1f} MB: growth {growth:+.1f} MB (target < {GROWTH_LIMIT_MB:.0f}): "
              f"{'pass' if growth < GROWTH_LIMIT_MB else 'FAIL'}")
        if growth >= GROWTH_LIMIT_MB:
            failed.append("lsp memory")
    print("\n3. lsp: didChange -> publishDiagnostics of that version (includes a 100 ms debounce)")
    print(f"  first open of the MLP (the worker imports torch): {got['first']:.2f} s")
    for name in ("mlp.yaml", "resnet18.yaml"):
        print(f"  {name:15} {summary(got[name])}")
    s = got["supersede"]
    stale = 2 in s["versions"]
    print(f"  llama2-70b.yaml, 2 edits 0.5 s apart: versions published {s['versions']}; the "
          f"second's diagnostics after {s['latency']:.2f} s; the first's result "
          f"{'PUBLISHED (stale)' if stale else 'dropped'}")
    if stale:
        failed.append("lsp published a superseded version")
    return failed


def _jobs_table(repeat: int) -> list[str]:
    print(f"\n4. lazyspec check on the bundled runs (best of {repeat})")
    got = check_jobs(repeat)
    (one, cpu1, load1, code1, out1), (two, cpu2, load2, code2, out2) = got[1], got[2]
    same = (code1, out1) == (code2, out2)
    print(f"  -j 1: {one:6.1f} s ({cpu1:.1f} s of CPU, load before {load1:.1f})   "
          f"-j 2: {two:6.1f} s ({cpu2:.1f} s of CPU, load before {load2:.1f})")
    print(f"  speed-up {one / two:.2f} x; same output and exit code ({code1}): "
          f"{'yes' if same else 'NO'}")
    return [] if same else ["check -j 2 differs from -j 1"]


if __name__ == "__main__":
    raise SystemExit(main())
