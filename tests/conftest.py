"""Shared fixtures: run the CLI in-process and capture what it prints."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from lazyspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# `check` and `lock` default to one worker process per core, each importing torch: seconds per
# command that the suite's many small checks would pay for nothing. tests/test_parallel.py asks
# for workers with -j.
os.environ.setdefault("LAZYSPEC_JOBS", "1")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `lazyspec ARGS...` in-process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out = capsys.readouterr()
        return CliResult(int(exc.value.code or 0), out.out, out.err)

    return run


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec text to a file in tmp_path and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/*.out from the current output")
    parser.addoption("--fuzz-long", action="store_true",
                     help="run the fuzz tests (tests/test_fuzz.py) and the kill test "
                     "(tests/test_atomic.py) far longer, with random seeds; "
                     "LAZYSPEC_FUZZ_EXAMPLES=N sets the examples per fuzz target")


# --- fuzzing: hypothesis profiles ---------------------------------------------------------------
#
# "ci" (the default): few examples per target, no deadline, derandomized, so CI is reproducible
# and fast. "fuzz-long" (`pytest --fuzz-long`, or LAZYSPEC_FUZZ_EXAMPLES=N): many examples, fresh
# random seeds each run, and failures remembered in .hypothesis/. `--hypothesis-profile NAME`
# still wins over both.

FUZZ_LONG_FACTOR = 25  # --fuzz-long runs each target this many times its CI examples
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True,
                          database=None, print_blob=True, suppress_health_check=_HEALTH)
settings.register_profile("fuzz-long", max_examples=100 * FUZZ_LONG_FACTOR, deadline=None,
                          derandomize=False, print_blob=True, suppress_health_check=_HEALTH)
FUZZ_LONG = False


def pytest_configure(config: pytest.Config) -> None:
    global FUZZ_LONG
    # Reporting a falsifying example, hypothesis formats it with black, whose mypy_extensions
    # import warns; under filterwarnings=error that would hide the failure behind an INTERNALERROR.
    config.addinivalue_line("filterwarnings",
                            "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
    FUZZ_LONG = bool(config.getoption("--fuzz-long") or os.environ.get("LAZYSPEC_FUZZ_EXAMPLES"))
    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile("fuzz-long" if FUZZ_LONG else "ci")


def fuzz_examples(ci: int) -> int:
    """Examples for one fuzz target: `ci` in CI; LAZYSPEC_FUZZ_EXAMPLES, else FUZZ_LONG_FACTOR
    times `ci`, in a long run."""
    env = os.environ.get("LAZYSPEC_FUZZ_EXAMPLES")
    if env:
        return max(1, int(env))
    return ci * FUZZ_LONG_FACTOR if FUZZ_LONG else ci


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """Compare text with tests/golden/NAME; a missing golden file fails (write it with
    --update-golden)."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = ROOT / "tests" / "golden" / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"missing golden file {path}: run pytest --update-golden"
        assert text == path.read_text(encoding="utf-8"), f"output differs from {path}"

    return check


# --- hangs fail instead of hanging ----------------------------------------------------------------

HANG_SECONDS = 20  # a guard, not a timing assertion: what it guards takes well under a second


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so lazyspec's own handlers cannot swallow it."""


@contextlib.contextmanager
def hang_guard(what: str, seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail (Hang) when the body runs past `seconds`. A loop inside C that never returns to
    Python cannot be interrupted: after 3 x `seconds` a watchdog ends the whole run, printing
    every thread's stack, so that CI fails instead of hanging."""
    faulthandler.dump_traceback_later(seconds * 3, exit=True, file=sys.__stderr__)
    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:
        def on_alarm(signum: int, frame: Any) -> None:
            raise Hang(f"no result after {seconds} s: {what}")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
