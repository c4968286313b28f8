"""Output in every environment: NO_COLOR, no TTY, a real TTY, narrow terminals, encodings that
cannot show `─` or `≥` (LANG=C with PYTHONIOENCODING=ascii, latin-1), and --traceback.

Two subprocesses (a pseudo-terminal, and pipes in an ASCII locale) each run several commands
through one small driver, so the suite pays for starting torch twice; the rest runs in-process.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SPECS, hang_guard

import lazyspec
from lazyspec.cli import main

PACKAGE_ROOT = Path(lazyspec.__file__).resolve().parent.parent
UNICODE_SPEC = """\
name: "Modèle ≥ 2 — π"
description: "largeur ≥ 16"
params: {largeur: 16}
layers:
  - LazyLinear(largeur)   # ≥ 16 unités
  - ReLU
  - sortie: LazyLinear(4)
"""
BROKEN_UNICODE_SPEC = "layers:\n  - LazyLinear(4)  # ≥ 4\n  - Föö  # ≥\n"
ANSI = "\x1b["

# Runs lazyspec commands one after another in one process, each between markers, so one
# subprocess (one torch import) covers them all in that process's real stdout and stderr.
DRIVER = """
import json, os, sys
from lazyspec.cli import main
for i, (env, argv) in enumerate(json.loads(sys.argv[1])):
    os.environ.update(env)
    print(f"<<<{i}", flush=True)
    print(f"<<<{i}", file=sys.stderr, flush=True)
    try:
        main(argv)
    except SystemExit as e:
        code = e.code
    sys.stdout.flush()
    print(">>> exit", code, flush=True)
    print(">>> exit", code, file=sys.stderr, flush=True)
"""


def drive(commands: list[tuple[dict[str, str], list[str]]], env: dict[str, str], cwd: Path,
          stdout: int | None = None) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "GITHUB_STEP_SUMMARY",
                                                              "COLUMNS", "FORCE_COLOR")}
    full["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), full.get("PYTHONPATH", "")])
    full.update(env)
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(commands)], cwd=cwd,
                            env=full, stdout=stdout if stdout is not None else subprocess.PIPE,
                            stderr=subprocess.PIPE)


def sections(raw: bytes) -> list[tuple[str, bytes]]:
    """(exit code, bytes printed) for each command, in order."""
    out: list[tuple[str, bytes]] = []
    for chunk in raw.split(b"<<<")[1:]:
        _, _, rest = chunk.partition(b"\n")
        body, _, tail = rest.rpartition(b">>> exit ")
        out.append((tail.split()[0].decode(), body))
    return out


# --- a real terminal: colour unless NO_COLOR; the terminal's width --------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_a_terminal_gets_colour_unless_no_color_and_narrow_terminals_lose_nothing(
        tmp_path: Path) -> None:
    import pty

    mlp = str(SPECS / "mlp.yaml")
    (tmp_path / "specs").mkdir()
    long_name = "a-rather-long-spec-name-for-a-narrow-terminal.yaml"
    for name in ("mlp.yaml", "mlp_fixed.yaml", long_name):
        (tmp_path / "specs" / name).write_bytes((SPECS / "mlp.yaml").read_bytes())
    commands = [
        ({}, ["infer", mlp, "--input", "2,20"]),
        ({"NO_COLOR": "1"}, ["infer", mlp, "--input", "2,20"]),
        ({"NO_COLOR": "1", "COLUMNS": "40"}, ["check", "specs", "--input", "2,20"]),
    ]
    leader, follower = pty.openpty()
    child = drive(commands, {"TERM": "xterm"}, tmp_path, stdout=follower)
    os.close(follower)
    raw = b""
    with hang_guard("lazyspec on a pseudo-terminal", 120):
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal closed
                break
            if not chunk:
                break
            raw += chunk
        _, err = child.communicate(timeout=120)
    os.close(leader)
    assert child.returncode == 0, err.decode()
    out = sections(raw.replace(b"\r\n", b"\n"))
    coloured, plain, narrow = out
    assert coloured[0] == "0" and ANSI in coloured[1].decode(), coloured
    assert plain[0] == "0" and ANSI not in plain[1].decode()
    assert "0.weight" in plain[1].decode()
    # 40 columns: `check` fails (no lock), and every status, spec and count is still whole
    assert narrow[0] == "1"
    text = narrow[1].decode()
    assert ANSI not in text and "…" not in text
    assert text.count("FAIL (missing)") == 3 and text.count("7,946") == 3
    for spec in ("specs/mlp.yaml", "specs/a-rather-long-spec-name-for-a-narrow-terminal.yaml"):
        assert spec in text
    assert "Traceback" not in err.decode()


# --- no terminal: pipes, an ASCII locale ------------------------------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_an_ascii_or_latin1_locale_gets_every_report_without_a_crash(
        encoding: str, tmp_path: Path) -> None:
    (tmp_path / "u.yaml").write_text(UNICODE_SPEC, encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(BROKEN_UNICODE_SPEC, encoding="utf-8")
    commands: list[tuple[dict[str, str], list[str]]] = [
        ({}, ["infer", "u.yaml", "--input", "2,20"]),
        ({}, ["infer", "u.yaml", "--input", "2,20", "--format", "markdown"]),
        ({}, ["infer", "u.yaml", "--input", "2,20", "--format", "github"]),
        ({}, ["infer", "u.yaml", "--input", "2,20", "--format", "json"]),
        ({}, ["show", "u.yaml"]),
        ({}, ["graph", "u.yaml", "--input", "2,20"]),
        ({}, ["export", "u.yaml", "--input", "2,20"]),
        ({}, ["lock", "u.yaml", "--input", "2,20"]),
        ({}, ["check", "u.yaml"]),
        ({}, ["infer", "bad.yaml", "--input", "2,20"]),
        ({}, ["infer", "u.yaml", "--input", "2,20", "--expect-output", "2,5"]),
        ({}, ["schema"]),
    ]
    if encoding != "ascii":
        commands = commands[:2] + commands[9:10]  # one is enough to show the other encoding
    # LANG=C alone is not enough: Python turns the C locale into UTF-8 (PEP 538, 540).
    env = {"LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": f"{encoding}:strict",
           "PYTHONUTF8": "0"}
    child = drive(commands, env, tmp_path)
    with hang_guard(f"lazyspec with {encoding} output", 120):
        raw_out, raw_err = child.communicate(timeout=120)
    assert child.returncode == 0, raw_err.decode("utf-8", "replace")
    out, err = sections(raw_out), sections(raw_err)
    assert len(out) == len(err) == len(commands)
    for (_, argv), (code, printed), (_, printed_err) in zip(commands, out, err, strict=True):
        want = "1" if "bad.yaml" in argv or "--expect-output" in argv else "0"
        message = f"{argv}: exit {code}\n{printed_err.decode(encoding, 'replace')}"
        assert code == want, message
        assert b"Traceback" not in printed + printed_err, message
        assert b"LS303" not in printed_err, message
        printed.decode(encoding)  # what reached the pipe is in the locale's encoding
        printed_err.decode(encoding)
    table = out[0][1].decode(encoding)
    assert "-----" in table and "0.weight" in table  # the rule, in ASCII
    broken = err[-1 if encoding != "ascii" else 9][1].decode(encoding)
    assert "error[LS120]: unknown op" in broken
    if encoding == "ascii":
        assert "Mod\\xe8le \\u2265 2" in table  # characters the locale lacks, escaped
        assert "F\\xf6\\xf6" in broken
    else:
        assert "Modèle \\u2265 2" in table and "Föö" in broken


@pytest.mark.parametrize("argv", [
    ["infer", "{spec}", "--input", "2,20"],
    ["infer", "{spec}", "--input", "2,20", "--format", "markdown"],
    ["show", "{spec}"],
    ["check", "--lock", "missing.lock", "{spec}", "--input", "2,20"],
    ["infer", "{bad}", "--input", "2,20"],
], ids=["infer", "markdown", "show", "check", "error"])
def test_strict_ascii_streams_in_process(argv: list[str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, in-process: stdout and stderr that raise on anything but ASCII."""
    (tmp_path / "u.yaml").write_text(UNICODE_SPEC, encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(BROKEN_UNICODE_SPEC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    argv = [a.format(spec="u.yaml", bad="bad.yaml") for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv)
    monkeypatch.undo()
    out.flush()
    err.flush()
    stdout = out.buffer.getvalue().decode("ascii")  # type: ignore[attr-defined]
    stderr = err.buffer.getvalue().decode("ascii")  # type: ignore[attr-defined]
    assert stdout or info.value.code, "no report"
    assert info.value.code == (1 if "bad.yaml" in argv or "check" in argv else 0), stderr
    assert "LS303" not in stderr and "Traceback" not in stderr, stderr


# --- NO_COLOR, no TTY and narrow terminals, in-process -------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_color_wins_over_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    for no_color, coloured in ((None, True), ("1", False)):
        if no_color is None:
            monkeypatch.delenv("NO_COLOR", raising=False)
        else:
            monkeypatch.setenv("NO_COLOR", no_color)
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stdout", terminal)
        with pytest.raises(SystemExit):
            main(["infer", str(SPECS / "mlp.yaml"), "--input", "2,20"])
        monkeypatch.undo()
        assert (ANSI in terminal.getvalue()) is coloured


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "github"])
def test_no_tty_means_no_colour(fmt: str, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["infer", str(SPECS / "resnet18.yaml"), "--input", "1,3,32,32", "--format", fmt])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert ANSI not in out and ("layer2.0.downsample.0" in out or fmt == "github")


@pytest.mark.parametrize("argv", [
    ["infer", str(SPECS / "gpt2.yaml"), "--input", "2,8:int64", "--set", "n_layer=1"],
    ["show", str(SPECS / "gpt2.yaml")],
    ["infer", str(SPECS / "resnet18.yaml"), "--input", "1,3,32,32", "--depth", "2"],
], ids=["infer", "show", "depth"])
def test_forty_columns_fold_but_never_cut(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "…" not in out  # no cell cut short
    assert "38,597,376" in out or "9,408" in out  # counts whole (gpt2's wte; resnet's conv1)


# --- --traceback --------------------------------------------------------------------------------


def test_an_internal_error_is_a_message_and_traceback_shows_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lazyspec import dryrun

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(dryrun, "run", broken)
    argv = ["infer", str(SPECS / "mlp.yaml"), "--input", "2,20"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "error[LS303]: internal error: RuntimeError: boom" in err
    assert "rerun with --traceback" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        main(["--traceback", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "Traceback (most recent call last)" in err
    assert 'raise RuntimeError("boom")' in err
    assert "error[LS303]: internal error: RuntimeError: boom" in err
    with pytest.raises(SystemExit):  # and the flag does not stick to the next command
        main(argv)
    assert "Traceback" not in capsys.readouterr().err
