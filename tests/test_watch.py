"""`--watch`: re-run when the spec or a file it includes changes (lazyspec/watch.py).

In-process tests drive `watch.run` with a stand-in command and a stop event (no torch, no
timing); end-to-end tests run `lazyspec infer --watch` and `check --watch` as processes, write
files and read the redraws, then stop them with Ctrl-C (SIGINT). Waits are bounded by
`hang_guard`, never asserted on.
"""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT, hang_guard

from lazyspec import watch
from lazyspec.errors import Diagnostic, UsageError

MLP = "layers:\n  - LazyLinear(256)\n  - ReLU\n  - LazyLinear(10)\n"


# --- what is watched ------------------------------------------------------------------------


def test_watched_files_are_absolute_and_their_folders_are_watched(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    w = watch.Watched.of(["m.yaml", "sub/inc.yaml"])
    assert tmp_path / "m.yaml" in w.files
    assert w.folders() == {tmp_path, tmp_path / "sub"}
    assert w.wants(str(tmp_path / "sub" / "inc.yaml"))
    assert not w.wants(str(tmp_path / "other.yaml"))  # a neighbour is not the spec


def test_a_deleted_folder_is_watched_through_its_parent(tmp_path: Path) -> None:
    w = watch.Watched.of([tmp_path / "gone" / "m.yaml"])
    assert w.folders() == {tmp_path}
    assert w.wants(str(tmp_path / "gone"))  # its re-creation concerns the run


def test_a_tree_wants_new_spec_files_and_folders_but_not_other_files(tmp_path: Path) -> None:
    (tmp_path / "specs" / "deep").mkdir(parents=True)
    (tmp_path / "specs" / ".git").mkdir()
    w = watch.Watched.of([], [tmp_path / "specs"])
    assert w.folders() == {tmp_path / "specs", tmp_path / "specs" / "deep"}  # not .git
    assert w.wants(str(tmp_path / "specs" / "deep" / "new.yaml"))
    assert w.wants(str(tmp_path / "specs" / "newfolder"))
    assert not w.wants(str(tmp_path / "specs" / "notes.txt"))


def test_screen_clears_a_terminal_and_separates_runs_elsewhere() -> None:
    def write(stream: io.StringIO, text: str) -> None:
        stream.write(text)

    out, err = io.StringIO(), io.StringIO()
    tty = watch.Screen(out, err, write, tty=True)
    tty.start("start")
    tty.start("m.yaml changed")
    assert out.getvalue() == watch.CLEAR * 2 and "running again" not in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    plain = watch.Screen(out, err, write, tty=False)
    plain.start("start")
    plain.done(watch.Watched.of(["/m.yaml"]), 0.01)
    plain.start("m.yaml changed")
    assert watch.CLEAR not in out.getvalue()
    assert "lazyspec: watching 1 file" in err.getvalue()
    assert "lazyspec: m.yaml changed: running again" in err.getvalue()


# --- the loop, in-process -------------------------------------------------------------------


class Loop:
    """`watch.run` in a thread with a stand-in command; each run puts what it read on a queue."""

    def __init__(self, once: Callable[[], list[Path]], base: list[Path],
                 on_status: Callable[[int], object] | None = None):
        self.runs: queue.Queue[object] = queue.Queue()
        self.stop = threading.Event()
        self.errors: list[Exception] = []

        def run_once() -> watch.Watched:
            try:
                files = once()
            except Exception as e:
                self.runs.put(e)
                raise
            self.runs.put(files)
            return watch.Watched.of(files)

        statuses = [0]

        def write(stream: io.StringIO, text: str) -> None:
            stream.write(text)
            if on_status is not None and text.startswith("lazyspec: watching"):
                statuses[0] += 1
                on_status(statuses[0])  # right after the run, before any watcher is back

        screen = watch.Screen(io.StringIO(), io.StringIO(), write, tty=False)
        self.thread = threading.Thread(target=watch.run, args=(
            run_once, watch.Watched.of(base), screen, self.errors.append),
            kwargs={"stop": self.stop}, daemon=True)

    def next_run(self, what: str) -> object:
        with hang_guard(what, 60):
            while True:
                try:
                    return self.runs.get(timeout=0.05)
                except queue.Empty:
                    pass


@pytest.fixture
def loop() -> Iterator[Callable[..., Loop]]:
    started: list[Loop] = []

    def start(once: Callable[[], list[Path]], base: list[Path],
              on_status: Callable[[int], object] | None = None) -> Loop:
        running = Loop(once, base, on_status)
        running.thread.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop.set()
        running.thread.join(20)
        assert not running.thread.is_alive(), "the watch loop did not stop"


def settle() -> None:
    # Let the watcher start after a run before the next write (its first snapshot and its
    # folder watch are what the test exercises, not a race with them). Not an assertion.
    time.sleep(0.3)


def test_a_change_runs_again_and_an_include_added_later_is_watched(
        tmp_path: Path, loop: Callable[..., Loop]) -> None:
    spec, inc = tmp_path / "m.yaml", tmp_path / "lib" / "inc.yaml"
    spec.write_text("a")
    reads = {"files": [spec]}
    running = loop(lambda: list(reads["files"]), [spec])
    assert running.next_run("first run") == [spec]
    settle()
    inc.parent.mkdir()
    inc.write_text("params: {d: 4}\n")
    reads["files"] = [spec, inc]  # the next run reads the include too
    spec.write_text("b")
    assert running.next_run("run after the spec changed") == [spec, inc]
    settle()
    inc.write_text("params: {d: 8}\n")
    assert running.next_run("run after the include changed") == [spec, inc]


def test_a_file_deleted_and_written_again_is_picked_up(tmp_path: Path,
                                                      loop: Callable[..., Loop]) -> None:
    spec = tmp_path / "m.yaml"
    spec.write_text("a")
    seen: list[str] = []

    def once() -> list[Path]:
        seen.append(spec.read_text() if spec.exists() else "<missing>")
        return [spec]

    running = loop(once, [spec])
    running.next_run("first run")
    settle()
    spec.unlink()  # how some editors save: delete, then write a new file
    spec.write_text("b")
    running.next_run("run after the new file")
    with hang_guard("the new content is seen", 60):
        while seen[-1] != "b":
            running.next_run("another run")
    spec.unlink()
    spec.with_suffix(".tmp").write_text("c")
    spec.with_suffix(".tmp").rename(spec)  # or write a temporary file and rename it over
    with hang_guard("the renamed file is seen", 60):
        while seen[-1] != "c":
            running.next_run("another run")


def test_a_failing_run_is_reported_and_watching_goes_on(tmp_path: Path,
                                                       loop: Callable[..., Loop]) -> None:
    spec = tmp_path / "m.yaml"
    spec.write_text("ok")

    def once() -> list[Path]:
        if spec.read_text() == "broken":
            raise UsageError([Diagnostic("LS301", "half-typed")])
        return [spec]

    running = loop(once, [spec])
    running.next_run("first run")
    settle()
    spec.write_text("broken")
    assert isinstance(running.next_run("the failing run"), UsageError)
    assert [str(e) for e in running.errors] == [": half-typed"]
    settle()
    spec.write_text("ok")
    assert running.next_run("the run after the fix") == [spec]


def test_a_change_made_while_no_watcher_was_open_is_not_lost(
        tmp_path: Path, loop: Callable[..., Loop]) -> None:
    """The first run (torch's import, seconds) happens before any watcher exists: a save made
    meanwhile must still cause a run."""
    spec = tmp_path / "m.yaml"
    spec.write_text("a")
    gate = threading.Event()

    def once() -> list[Path]:
        if not gate.is_set():
            gate.set()
            spec.write_text("changed during the first run")
            os.utime(spec, ns=(1, 1))  # a different mtime, whatever the clock's resolution
        return [spec]

    running = loop(once, [spec])
    running.next_run("first run")
    running.next_run("the run the change during the first one causes")


def test_a_save_right_after_a_run_is_seen_whether_or_not_a_watcher_is_open(
        tmp_path: Path, loop: Callable[..., Loop]) -> None:
    """Saves made the moment a run has printed (before the watcher is back): after the first
    run, to an include that run found (no watcher had ever seen it), then after the second and
    the third, to the spec. Each must cause the next run."""
    spec, inc = tmp_path / "m.yaml", tmp_path / "sub" / "inc.yaml"
    spec.write_text("0")
    inc.parent.mkdir()
    inc.write_text("0")

    def save(status: int) -> None:
        if status <= 3:
            target = inc if status == 1 else spec
            target.write_text(f"save {status} " * status)  # another size: seen at any mtime

    running = loop(lambda: [spec, inc], [spec], save)
    for i in range(4):
        assert running.next_run(f"run {i + 1}") == [spec, inc]


# --- end to end: the command ----------------------------------------------------------------


class Watching:
    """A `lazyspec ... --watch` process; its stdout and stderr, merged, read line by line."""

    def __init__(self, args: list[str], cwd: Path):
        env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="120")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lazyspec", *args], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def redraw(self, what: str) -> str:
        """Everything printed up to the next status line (the end of one run's output)."""
        got: list[str] = []
        with hang_guard(what, 120):
            while True:
                line = self.lines.get()
                if line is None:
                    raise AssertionError(f"the process ended: {''.join(self.seen)}")
                self.seen.append(line)
                if line.startswith("lazyspec: watching"):
                    return "".join(got)
                got.append(line)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit code and the rest of the output."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        rest: list[str] = []
        while (line := self.lines.get(timeout=10)) is not None:
            rest.append(line)
        return code, "".join(rest)


@pytest.fixture
def watching() -> Iterator[Callable[[list[str], Path], Watching]]:
    started: list[Watching] = []

    def start(args: list[str], cwd: Path) -> Watching:
        started.append(Watching(args, cwd))
        return started[-1]

    yield start
    for w in started:
        if w.process.poll() is None:
            w.process.kill()
        w.process.wait(10)
        w.reader.join(10)
        assert w.process.stdout is not None
        w.process.stdout.close()


def test_infer_watch_redraws_shows_errors_and_stops_on_ctrl_c(
        tmp_path: Path, watching: Callable[[list[str], Path], Watching]) -> None:
    spec = tmp_path / "m.yaml"
    spec.write_text(MLP)
    w = watching(["infer", "m.yaml", "--input", "2,20", "--watch"], tmp_path)
    assert "output: [2, 10]" in w.redraw("the first run")
    spec.write_text(MLP.replace("LazyLinear(10)", "LazyLinear(12)"))
    shown = w.redraw("the run after an edit")
    assert "output: [2, 12]" in shown and "m.yaml changed: running again" in shown
    spec.write_text("layers:\n  - LazyLinear(256\n")  # half-typed
    shown = w.redraw("the run of the invalid spec")
    assert "m.yaml:2:15: error[LS122]" in shown and "output:" not in shown
    spec.write_text(MLP.replace("LazyLinear(10)", "LazyLinear(3)"))
    assert "output: [2, 3]" in w.redraw("the run after the fix")
    code, rest = w.interrupt()
    assert code == 130, rest
    assert "Traceback" not in "".join(w.seen) + rest


def test_check_watch_follows_includes_and_new_specs(
        tmp_path: Path, watching: Callable[[list[str], Path], Watching]) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "m.yaml").write_text("include: [widths.yaml]\nlayers:\n  - LazyLinear(d)\n")
    (specs / "widths.yaml").write_text("params: {d: 8}\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.lazyspec]\nspecs = ['specs']\n[[tool.lazyspec.run]]\nspec = 'specs/m.yaml'\n"
        "inputs = ['2,4']\n")
    w = watching(["check", "--watch", "-j", "1"], tmp_path)
    assert "no lock entry" in w.redraw("the first run")
    (specs / "widths.yaml").write_text("params: {d: 16}\n")
    assert "[2, 16]" in w.redraw("the run after the include changed")
    (specs / "n.yaml").write_text("layers:\n  - Linear(3, 4)\n")
    shown = w.redraw("the run after a spec was added")
    assert "specs/n.yaml" in shown and "[2, 16]" in shown
    code, rest = w.interrupt()
    assert code == 130 and "Traceback" not in "".join(w.seen) + rest


def test_watch_and_update_do_not_mix(cli) -> None:
    r = cli("check", "--watch", "--update", "specs/mlp.yaml")
    assert r.code == 2 and "--watch cannot be combined with --update" in r.stderr


def test_infer_watch_keeps_watching_an_include_that_went_missing(
        tmp_path: Path, watching: Callable[[list[str], Path], Watching]) -> None:
    """An include moved away fails the run (LS140); writing it again runs again, without a
    touch of the spec: a file the run tried and failed to read is still watched."""
    (tmp_path / "lib").mkdir()
    common = tmp_path / "lib" / "common.yaml"
    common.write_text("params: {d: 8}\n")
    (tmp_path / "m.yaml").write_text("include: [lib/common.yaml]\nlayers:\n  - LazyLinear(d)\n")
    w = watching(["infer", "m.yaml", "--input", "2,4", "--watch"], tmp_path)
    assert "output: [2, 8]" in w.redraw("the first run")
    common.rename(tmp_path / "common.yaml.bak")
    shown = w.redraw("the run without the include")
    assert "LS140" in shown and "output:" not in shown
    assert "watching 2 files" in w.seen[-1]  # the spec and the missing include
    common.write_text("params: {d: 12}\n")
    assert "output: [2, 12]" in w.redraw("the run after the include came back")
    common.write_text("params: {d: [\n")  # an include that is read but does not parse
    assert "common.yaml" in w.redraw("the run of the broken include")
    common.write_text("params: {d: 6}\n")
    assert "output: [2, 6]" in w.redraw("the run after the include was fixed")
    code, rest = w.interrupt()
    assert code == 130 and "Traceback" not in "".join(w.seen) + rest


def test_a_run_records_the_includes_it_could_not_read_or_parse(tmp_path: Path) -> None:
    """`Outcome.read`, what `--watch` watches: every file tried, also those that failed (a
    missing include, a FIFO, one that does not parse) and those a good include names."""
    from lazyspec import engine

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "good.yaml").write_text("include: [deep.yaml]\nparams: {d: 8}\n")
    (tmp_path / "lib" / "deep.yaml").write_text("params: {e: 2}\n")
    (tmp_path / "lib" / "broken.yaml").write_text("params: {d: [\n")
    os.mkfifo(tmp_path / "lib" / "pipe.yaml")
    spec = tmp_path / "m.yaml"
    spec.write_text("include: [lib/good.yaml, lib/gone.yaml, lib/broken.yaml, lib/pipe.yaml]\n"
                    "layers:\n  - LazyLinear(d)\n")
    outcome = engine.run(engine.Request(spec, stage="parse"))
    assert outcome.parsed is not None
    codes = {d.code for d in outcome.parsed.problems}
    assert "LS140" in codes
    assert {Path(p).name for p in outcome.read} == {
        "m.yaml", "good.yaml", "deep.yaml", "gone.yaml", "broken.yaml", "pipe.yaml"}


def test_check_watch_runs_again_when_a_missing_include_appears(
        tmp_path: Path, watching: Callable[[list[str], Path], Watching]) -> None:
    (tmp_path / "m.yaml").write_text("include: [widths.yaml]\nlayers:\n  - LazyLinear(d)\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.lazyspec]\n[[tool.lazyspec.run]]\nspec = 'm.yaml'\ninputs = ['2,4']\n")
    w = watching(["check", "--watch", "-j", "1", "m.yaml"], tmp_path)
    assert "LS140" in w.redraw("the first run, without the include")
    (tmp_path / "widths.yaml").write_text("params: {d: 16}\n")
    assert "[2, 16]" in w.redraw("the run after the include was written")
    code, rest = w.interrupt()
    assert code == 130 and "Traceback" not in "".join(w.seen) + rest
