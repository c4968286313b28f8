"""The catalogue of invalid specs: each file in tests/cases/invalid/ says what lazyspec must report.

Every case is a small spec whose comment lines carry its expectation:

    # expect: LS120 3:5 unknown op 'LazyLinar'      the first diagnostic printed (file order):
                                                    code, line:col, text its message contains
    # expect: LS141 _inc/b.yaml:3:5 include cycle   the same, in another file (relative path)
    # also: LS124 5:20 undefined name               another diagnostic that must be printed too
                                                    (repeatable; the text is optional)
    # contains: did you mean 'LazyLinear'?          text of the first diagnostic's whole report
                                                    (message, notes, trail, hint); repeatable
    # input: 2,20                                   an --input flag (repeatable; default 2,20)
    # args: --scale small                           more command-line arguments
    # exit: 1                                       the exit code (default: the code's own)

The command is `lazyspec infer FILE --input ...` run in-process through `lazyspec.cli.main`, in
the catalogue's folder, so diagnostics name files relative to it.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lazyspec.cli import main
from lazyspec.errors import CODES

CASES_DIR = Path(__file__).parent / "cases" / "invalid"
CASES = sorted(CASES_DIR.glob("*.yaml"))

_HEADER = re.compile(r"^#\s*(expect|also|contains|input|args|exit):\s*(.*?)\s*$")
_EXPECT = re.compile(r"^(?P<code>LS\d{3})\s+(?:(?P<path>\S+):)?(?P<line>\d+):(?P<col>\d+)"
                     r"(?:\s+(?P<text>.*))?$")
_DIAG = re.compile(r"^(?:(?P<path>.+?):(?P<line>\d+):(?P<col>\d+)|lazyspec): "
                   r"(?P<severity>error|warning)\[(?P<code>LS\d{3})\]: (?P<message>.*)$")
_CARET = re.compile(r"^ +\| ( *)\^$")
MAX_LINE = 1_000  # a diagnostic shows values in short: no line of it is longer than this


@dataclass(frozen=True)
class Expected:
    code: str
    path: str | None  # relative to CASES_DIR; None: the case file itself
    line: int
    col: int
    text: str


@dataclass
class Case:
    path: Path
    expect: Expected
    also: list[Expected] = field(default_factory=list)
    contains: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    exit: int | None = None

    @property
    def exit_code(self) -> int:
        return self.exit if self.exit is not None else CODES[self.expect.code].exit_code


@dataclass
class Printed:
    """One diagnostic as printed on stderr: its head line and the lines that follow it."""

    code: str
    path: str | None
    line: int | None
    col: int | None
    message: str
    body: list[str]

    @property
    def text(self) -> str:
        return "\n".join([self.message, *self.body])


def _expected(value: str, where: str) -> Expected:
    m = _EXPECT.match(value)
    if not m:
        raise ValueError(f"{where}: cannot read expectation {value!r}")
    if m["code"] not in CODES:
        raise ValueError(f"{where}: {m['code']} is not a documented code")
    return Expected(m["code"], m["path"], int(m["line"]), int(m["col"]), m["text"] or "")


def read_case(path: Path) -> Case:
    expect: Expected | None = None
    fields: dict[str, list[str]] = {"also": [], "contains": [], "input": [], "args": [],
                                    "exit": []}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _HEADER.match(line)
        if not m:
            continue
        key, value = m.groups()
        if key == "expect":
            if expect is not None:
                raise ValueError(f"{path.name}:{n}: a second `# expect:` line")
            expect = _expected(value, f"{path.name}:{n}")
        else:
            fields[key].append(value)
    if expect is None:
        raise ValueError(f"{path.name}: no `# expect:` line")
    return Case(
        path=path,
        expect=expect,
        also=[_expected(v, path.name) for v in fields["also"]],
        contains=fields["contains"],
        inputs=fields["input"] or ["2,20"],
        args=[a for v in fields["args"] for a in shlex.split(v)],
        exit=int(fields["exit"][-1]) if fields["exit"] else None,
    )


def parse_diagnostics(stderr: str) -> list[Printed]:
    out: list[Printed] = []
    for line in stderr.splitlines():
        m = _DIAG.match(line)
        if m:
            out.append(Printed(m["code"], m["path"], int(m["line"]) if m["line"] else None,
                               int(m["col"]) if m["col"] else None, m["message"], []))
        elif out:
            out[-1].body.append(line)
    return out


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def _same_file(printed: str | None, expected: str) -> bool:
    if printed is None:
        return False
    return (Path(os.path.normpath(CASES_DIR / printed)).resolve()
            == (CASES_DIR / expected).resolve())


def _matches(p: Printed, e: Expected, case: Case) -> bool:
    return (p.code == e.code and _same_file(p.path, e.path or case.path.name)
            and p.line == e.line and p.col == e.col and e.text in p.message)


def _shown(p: Printed) -> str:
    return f"{p.code} {p.path}:{p.line}:{p.col} {p.message}"


@pytest.fixture
def in_catalogue(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(CASES_DIR)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    return CASES_DIR


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 30, f"only {len(CASES)} invalid specs in {CASES_DIR}"


def test_every_case_has_a_readable_expectation() -> None:
    codes = set()
    for path in CASES:
        case = read_case(path)
        codes.add(case.expect.code)
        assert case.expect.line >= 1 and case.expect.col >= 1, path.name
    # the catalogue covers every family of spec errors
    assert {c[:4] for c in codes} >= {"LS10", "LS11", "LS12", "LS13", "LS14", "LS20"}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_spec(path: Path, in_catalogue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = read_case(path)
    argv = ["infer", path.name]
    for shape in case.inputs:
        argv += ["--input", shape]
    argv += case.args
    code, out, err = run_cli(argv, capsys)

    assert "Traceback (most recent call last)" not in out + err
    assert "LS303" not in err, f"internal error:\n{err}"
    printed = parse_diagnostics(err)
    assert printed, f"no diagnostic printed (exit {code}); stderr:\n{err}\nstdout:\n{out}"

    first = printed[0]
    assert _matches(first, case.expect, case), (
        f"first diagnostic:\n  got      {_shown(first)}\n  expected {case.expect}\n"
        f"stderr:\n{err}")
    for also in case.also:
        assert any(_matches(p, also, case) for p in printed), (
            f"missing diagnostic {also}; printed:\n" + "\n".join(map(_shown, printed)))
    for text in case.contains:
        assert text in first.text, f"{text!r} not in the first diagnostic:\n{first.text}"
    assert code == case.exit_code, f"exit {code}, expected {case.exit_code}; stderr:\n{err}"

    # The report's shape: a caret under the column, every diagnostic located, none repeated,
    # and an error count when there are several.
    carets = [m for m in (_CARET.match(line) for line in first.body) if m]
    source = (CASES_DIR / (case.expect.path or path.name)).read_text(encoding="utf-8")
    if case.expect.line <= len(source.splitlines()):  # not at the end of the stream
        assert carets, f"no caret line under the first diagnostic:\n{first.text}"
        assert len(carets[0].group(1)) + 1 == case.expect.col
    assert all(p.line is not None for p in printed), err
    keys = [(p.code, p.path, p.line, p.col, p.message) for p in printed]
    assert len(keys) == len(set(keys)), f"a diagnostic is printed twice:\n{err}"
    if len(printed) > 1:
        assert f"{len(printed)} errors" in err
    longest = max(err.splitlines(), key=len)
    assert len(longest) <= MAX_LINE, f"a {len(longest):,}-character line: {longest[:200]}..."
