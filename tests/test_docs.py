"""docs/spec-language.md stays true: its code table matches CODES, and its YAML examples compile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lazyspec
from lazyspec.errors import CODES, SpecError

DOC = Path(__file__).resolve().parent.parent / "docs" / "spec-language.md"
TEXT = DOC.read_text(encoding="utf-8")

# A row of the error-code table: | `LS123` | meaning | exit | example message |
CODE_ROW = re.compile(r"^\| `(LS\d{3})` \| (.+?) \| ([012]) \| (.+) \|$", re.MULTILINE)
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
INVALID = re.compile(r"^# invalid(?::\s*(LS\d{3}))?", re.MULTILINE)
NEEDS_FILES = re.compile(r"^# needs-files", re.MULTILINE)
MAX_NEEDS_FILES = 3  # examples that cannot run alone stay the exception


def code_table() -> dict[str, int]:
    """Code -> exit code, from the table in the doc's error-code section."""
    section = TEXT.split("## 21. Error codes", 1)[1]
    rows = CODE_ROW.findall(section)
    codes = [code for code, *_ in rows]
    assert len(codes) == len(set(codes)), "a code is listed twice in the table"
    return {code: int(exit_code) for code, _, exit_code, _ in rows}


def examples() -> list[tuple[int, str]]:
    """(line number, text) of every ```yaml block."""
    return [(TEXT.count("\n", 0, m.start()) + 2, m.group(1)) for m in YAML_BLOCK.finditer(TEXT)]


def model_examples() -> list[tuple[int, str]]:
    """Blocks that are whole specs (a top-level `layers:`), meant to compile."""
    return [(line, text) for line, text in examples()
            if re.search(r"^layers:", text, re.MULTILINE)
            and not INVALID.search(text) and not NEEDS_FILES.search(text)]


def static_invalid_examples() -> list[tuple[int, str, str]]:
    """`# invalid: LS1xx` blocks: the spec fails before any dry run, with that code."""
    out = []
    for line, text in examples():
        m = INVALID.search(text)
        if m and m.group(1) and m.group(1).startswith("LS1"):
            out.append((line, text, m.group(1)))
    return out


def test_code_table_lists_every_code_and_nothing_else():
    table = code_table()
    assert sorted(set(CODES) - set(table)) == [], "codes missing from the doc's table"
    assert sorted(set(table) - set(CODES)) == [], "codes in the doc's table that CODES lacks"


def test_code_table_exit_codes_match():
    table = code_table()
    wrong = {c: (table[c], CODES[c].exit_code) for c in table
             if c in CODES and table[c] != CODES[c].exit_code}
    assert wrong == {}, "exit codes in the doc (doc, CODES) differ"


def test_doc_has_examples_to_check():
    assert len(model_examples()) >= 15
    needs_files = [line for line, text in examples() if NEEDS_FILES.search(text)]
    assert len(needs_files) <= MAX_NEEDS_FILES, f"too many `# needs-files` examples: {needs_files}"


@pytest.mark.parametrize(("line", "text"), model_examples(),
                         ids=[f"line{line}" for line, _ in model_examples()])
def test_example_loads_and_compiles(line: int, text: str, tmp_path: Path):
    path = tmp_path / "example.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        module = lazyspec.load(path).build()
    except SpecError as e:
        pytest.fail(f"the example at docs/spec-language.md:{line} does not compile:\n{e}")
    from torch import nn

    assert isinstance(module, nn.Module)


@pytest.mark.parametrize(("line", "text", "code"), static_invalid_examples(),
                         ids=[f"line{line}-{code}" for line, _, code in static_invalid_examples()])
def test_invalid_example_fails_with_its_code(line: int, text: str, code: str, tmp_path: Path):
    path = tmp_path / "example.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        lazyspec.load(path).build()
    codes = [d.code for d in exc.value.diagnostics]
    assert code in codes, f"docs/spec-language.md:{line} is marked {code} but gives {codes}"
