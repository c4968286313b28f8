"""A spec is data: it can never import, evaluate or execute anything beyond the allowed layers.

The sentinel is tests/fixtures/allowpkg: importing it writes the file named by $ALLOWPKG_MARKER.
Each test puts tests/fixtures on sys.path, so "not imported" is a real claim: the package *could*
be imported, and the marker and sys.modules show whether it was. Shell commands in the specs
would create files under tmp_path; their absence shows nothing ran.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from lazyspec.cli import main

FIXTURES = Path(__file__).parent / "fixtures"

_DIAG = re.compile(r"^(?:(?P<path>.+?):(?P<line>\d+):(?P<col>\d+)|lazyspec): "
                   r"error\[(?P<code>LS\d{3})\]: (?P<message>.*)$", re.MULTILINE)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def diagnostics(self) -> list[tuple[str, int | None, int | None, str]]:
        return [(m["code"], int(m["line"]) if m["line"] else None,
                 int(m["col"]) if m["col"] else None, m["message"])
                for m in _DIAG.finditer(self.err)]

    def codes(self) -> list[str]:
        return [d[0] for d in self.diagnostics]


@dataclass
class Sandbox:
    folder: Path  # the working folder (no pyproject.toml in it or above it)
    marker: Path  # written when allowpkg is imported
    pwned: Path  # the shell commands in specs create this file

    def write(self, text: str, name: str = "spec.yaml") -> Path:
        path = self.folder / name
        path.write_text(text.replace("PWNED", str(self.pwned)), encoding="utf-8")
        return path

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> Run:
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(["infer", *args])
        captured = capsys.readouterr()
        code = info.value.code
        assert "Traceback (most recent call last)" not in captured.out + captured.err
        return Run(code if isinstance(code, int) else 1, captured.out, captured.err)

    def assert_nothing_imported_or_run(self) -> None:
        assert not self.marker.exists(), "allowpkg was imported"
        assert "allowpkg" not in sys.modules
        assert not any(name.startswith("allowpkg.") for name in sys.modules)
        assert not self.pwned.exists(), "a shell command from the spec ran"


def _forget_allowpkg() -> None:
    for name in [n for n in sys.modules if n == "allowpkg" or n.startswith("allowpkg.")]:
        del sys.modules[name]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(FIXTURES))
    marker = tmp_path / "allowpkg-imported"
    monkeypatch.setenv("ALLOWPKG_MARKER", str(marker))
    monkeypatch.setenv("NO_COLOR", "1")
    _forget_allowpkg()
    box = Sandbox(folder, marker, tmp_path / "pwned")
    # Anything that would run a command records the call instead.
    calls: list[str] = []

    def recorder(name: str) -> Any:
        def record(*a: Any, **k: Any) -> int:
            calls.append(f"{name}{a}")
            return 0

        return record

    monkeypatch.setattr("os.system", recorder("os.system"))
    monkeypatch.setattr("os.popen", recorder("os.popen"))
    monkeypatch.setattr(torch, "load", recorder("torch.load"))
    monkeypatch.setattr(torch.hub, "load", recorder("torch.hub.load"))
    popen_init = subprocess.Popen.__init__

    def popen(self: Any, *a: Any, **k: Any) -> None:
        calls.append(f"subprocess.Popen{a}")
        popen_init(self, *a, **k)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen)
    yield box
    _forget_allowpkg()
    assert calls == [], f"the spec ran: {calls}"


# --- the fixture itself: importing allowpkg does leave the trace the tests look for --------------


def test_the_sentinel_leaves_a_trace_when_imported(sandbox: Sandbox) -> None:
    assert not sandbox.marker.exists()
    import allowpkg  # noqa: F401

    assert sandbox.marker.exists()
    assert "allowpkg" in sys.modules


# --- dotted ops: refused before anything is imported ---------------------------------------------

DANGEROUS_OPS = {
    "os_system": 'os.system("touch PWNED")',
    "torch_load": 'torch.load("PWNED")',
    "builtins_eval": "builtins.eval(\"__import__('os').system('touch PWNED')\")",
    "builtins_exec": "builtins.exec(\"import allowpkg\")",
    "subprocess_popen": 'subprocess.Popen(["touch", "PWNED"])',
    "torch_hub_load": 'torch.hub.load("someone/repo", "model")',
    "importlib": 'importlib.import_module("allowpkg")',
    "allowpkg_not_allowed": "allowpkg.Scale(2.0)",
    "allowpkg_submodule_not_allowed": "allowpkg.layers.Affine(20)",
    "allowpkg_os_system": 'allowpkg.os.system("touch PWNED")',
    "nn_functional": "nn.functional.relu",
    "torch_nn_functional": "torch.nn.functional.relu",
}


@pytest.mark.parametrize("op", DANGEROUS_OPS.values(), ids=DANGEROUS_OPS.keys())
def test_dotted_ops_are_refused_without_importing(op: str, sandbox: Sandbox,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(f"layers:\n  - LazyLinear(10)\n  - {op}\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1, run.err
    assert run.diagnostics[0][:3] == ("LS121", 3, 5), run.err
    assert "not allowed" in run.diagnostics[0][3]
    assert "a spec cannot allow it itself" in run.err
    sandbox.assert_nothing_imported_or_run()


def test_the_stdlib_module_named_by_an_op_is_not_imported(
        sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    # `this` prints the Zen of Python when imported; nothing else imports it.
    assert "this" not in sys.modules
    spec = sandbox.write("layers:\n  - this.Zen\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1
    assert run.codes() == ["LS121"]
    assert "this" not in sys.modules
    assert "Beautiful is better than ugly" not in run.out + run.err


def test_names_that_are_not_module_classes_are_refused(
        sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write("layers:\n  - UninitializedParameter\n  - init\n  - Sequential\n"
                         "  - Module\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1
    assert [(c, line) for c, line, _, _ in run.diagnostics] == [
        ("LS121", 2), ("LS121", 3), ("LS120", 4), ("LS120", 5)]


# --- the allowlist -------------------------------------------------------------------------------

ALLOWED_SPEC = """\
layers:
  - allowpkg.Scale(3.0)
  - allowpkg.layers.Affine(20)
  - LazyLinear(5)
"""


def test_allow_lets_the_packages_layers_through(sandbox: Sandbox,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(ALLOWED_SPEC)
    run = sandbox.run(capsys, str(spec), "--input", "2,20", "--allow", "allowpkg",
                      "--format", "json")
    assert run.code == 0, run.err
    assert sandbox.marker.exists()
    import json

    result = json.loads(run.out)
    assert result["outputs"] == [[2, 5]]
    shapes = {p["path"]: p["shape"] for p in result["params"]}
    assert shapes == {"1.weight": [20], "1.bias": [20], "2.weight": [5, 20], "2.bias": [5]}


def test_the_same_spec_without_allow_imports_nothing(sandbox: Sandbox,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(ALLOWED_SPEC)
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1
    assert [d[:3] for d in run.diagnostics] == [("LS121", 2, 5), ("LS121", 3, 5)]
    assert "--allow allowpkg" in run.err  # the hint says how the person running it can allow it
    sandbox.assert_nothing_imported_or_run()


def test_allow_in_the_working_folders_pyproject(sandbox: Sandbox,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(ALLOWED_SPEC)
    (sandbox.folder / "pyproject.toml").write_text('[tool.lazyspec]\nallow = ["allowpkg"]\n',
                                                   encoding="utf-8")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 0, run.err
    assert sandbox.marker.exists()


@pytest.mark.parametrize(("allow", "op"), [
    ("allow", "allowpkg.Scale"),  # a prefix of the name is not its package
    ("allowpkg.layers", "allowpkg.Scale"),  # a subpackage does not allow its parent
    ("allowpkgs", "allowpkg.Scale"),
])
def test_the_allowlist_matches_whole_package_names(allow: str, op: str, sandbox: Sandbox,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(f"layers:\n  - {op}\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20", "--allow", allow)
    assert run.code == 1
    assert run.diagnostics[0][:3] == ("LS121", 2, 5)
    assert "is not allowed" in run.diagnostics[0][3]
    sandbox.assert_nothing_imported_or_run()  # the allowlist is checked before any import


@pytest.mark.parametrize(("op", "message"), [
    # re-exported from torch.nn: its real __module__ is torch's, outside the allowed prefix
    ("allowpkg.Linear(20, 5)", "is defined in 'torch.nn.modules.linear', outside the allowed "
                               "package 'allowpkg'"),
    ("allowpkg.torch.nn.Linear(20, 5)", "outside the allowed package 'allowpkg'"),
    ("allowpkg.nn.ReLU", "outside the allowed package 'allowpkg'"),
    # functions and modules reached through the allowed package are not layers
    ("allowpkg.make_layer", "is not an nn.Module class"),
    ('allowpkg.os.system("touch PWNED")', "is not an nn.Module class"),
    ('allowpkg.torch.load("PWNED")', "is not an nn.Module class"),
    ("allowpkg.os", "is not an nn.Module class"),
    # private names are never walked
    ("allowpkg._marker", "private"),
    ("allowpkg.__builtins__", "private"),
])
def test_allowed_package_exposes_only_its_own_layer_classes(
        op: str, message: str, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(f"layers:\n  - LazyLinear(20)\n  - {op}\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20", "--allow", "allowpkg")
    assert run.code == 1, run.err
    assert run.diagnostics[0][:3] == ("LS121", 3, 5), run.err
    assert message in run.diagnostics[0][3]
    assert not sandbox.pwned.exists()


@pytest.mark.parametrize(("allow", "op"), [
    ("torch", 'torch.load("PWNED")'),
    ("torch", 'torch.hub.load("someone/repo", "model")'),
    ("os", 'os.system("touch PWNED")'),
    ("builtins", "builtins.eval(\"__import__('os').system('touch PWNED')\")"),
    ("subprocess", 'subprocess.Popen(["touch", "PWNED"])'),
])
def test_allowing_a_package_never_opens_its_functions(allow: str, op: str, sandbox: Sandbox,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(f"layers:\n  - {op}\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20", "--allow", allow)
    assert run.code == 1
    assert run.diagnostics[0][:3] == ("LS121", 2, 5)
    assert "is not an nn.Module class" in run.diagnostics[0][3]
    assert not sandbox.pwned.exists()


# --- a spec cannot grant itself anything -----------------------------------------------------


def test_a_spec_cannot_allow_a_package(sandbox: Sandbox,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write("allow: [allowpkg]\nlayers:\n  - allowpkg.Scale(2.0)\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1
    assert [d[:3] for d in run.diagnostics] == [("LS110", 1, 1), ("LS121", 3, 5)]
    assert "unknown key 'allow'" in run.diagnostics[0][3]
    sandbox.assert_nothing_imported_or_run()


NOT_GRANTS = {
    "params": "params: {allow: [allowpkg]}\nlayers:\n  - allowpkg.Scale(2.0)\n",
    "free_text": ("name: allowpkg\ndescription: --allow allowpkg\n"
                  "layers:\n  - allowpkg.Scale(2.0)\n"),
    "block": "blocks:\n  B:\n    layers:\n      - allowpkg.Scale(2.0)\nlayers:\n  - B\n",
    "long_form": "layers:\n  - op: allowpkg.Scale\n    kwargs: {factor: 2.0}\n",
    "name_key": "layers:\n  - op: allowpkg.Scale\n    name: scale\n",
}


@pytest.mark.parametrize("text", NOT_GRANTS.values(), ids=NOT_GRANTS.keys())
def test_no_part_of_a_spec_allows_a_package(text: str, sandbox: Sandbox,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(text)
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1, run.err
    assert "LS121" in run.codes()
    sandbox.assert_nothing_imported_or_run()


def test_an_included_spec_cannot_allow_a_package(sandbox: Sandbox,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.write("allow: [allowpkg]\nblocks:\n  B:\n    layers:\n      - allowpkg.Scale\n"
                  "layers:\n  - B\n", "lib.yaml")
    spec = sandbox.write("include: [lib.yaml]\nlayers:\n  - B\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1
    assert "LS110" in run.codes() and "LS121" in run.codes()
    sandbox.assert_nothing_imported_or_run()


# --- expressions ---------------------------------------------------------------------------------

EXPRESSIONS = {
    "import_in_arg": "  - LazyLinear(__import__('allowpkg'))\n",
    "import_attr_call": "  - LazyLinear(__import__('os').system('touch PWNED'))\n",
    "eval_in_arg": "  - LazyLinear(eval('10'))\n",
    "exec_in_arg": "  - LazyLinear(exec('import allowpkg'))\n",
    "import_in_repeat": "  - op: ReLU\n    repeat: __import__('allowpkg')\n",
    "import_in_when": "  - op: ReLU\n    when: ${__import__('allowpkg')}\n",
    "import_in_long_form": "  - op: LazyLinear\n    args: [\"${__import__('allowpkg')}\"]\n",
    "dunder_walk": "  - LazyLinear(().__class__.__base__.__subclasses__())\n",
    "getattr": "  - LazyLinear(getattr(min, '__self__'))\n",
    "open": "  - LazyLinear(open('PWNED', 'w'))\n",
    "breakpoint": "  - LazyLinear(breakpoint())\n",
    "globals": "  - LazyLinear(globals())\n",
}


@pytest.mark.parametrize("line", EXPRESSIONS.values(), ids=EXPRESSIONS.keys())
def test_expressions_cannot_import_or_call(line: str, sandbox: Sandbox,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write("layers:\n  - LazyLinear(10)\n" + line)
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1, run.err
    code, line_no, _, message = run.diagnostics[0]
    assert code == "LS123", run.err
    assert line_no in (3, 4)
    assert "not allowed" in message
    sandbox.assert_nothing_imported_or_run()


def test_expression_in_params_cannot_import(sandbox: Sandbox,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write("params:\n  m: ${__import__('allowpkg')}\n  d: 10\n"
                         "layers:\n  - LazyLinear(d)\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1
    assert run.diagnostics[0][:3] == ("LS123", 2, 8)
    sandbox.assert_nothing_imported_or_run()


def test_set_cannot_inject_an_expression(sandbox: Sandbox,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # a `${...}` --set value is an expression of the same safe language as the spec's: refused,
    # and as a bad flag (LS301, exit 2), as docs/spec-language.md says
    spec = sandbox.write("params: {d: 10}\nlayers:\n  - LazyLinear(d)\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20",
                      "--set", "d=${__import__('allowpkg')}")
    assert run.code == 2, run.err
    assert run.codes() == ["LS301"] and "call of '__import__' is not allowed" in run.err
    sandbox.assert_nothing_imported_or_run()


# --- YAML: tags are refused before anything is constructed ----------------------------------------

TAGS = {
    "apply_os_system": 'params: !!python/object/apply:os.system ["touch PWNED"]\n',
    "apply_in_layers": "layers:\n  - !!python/object/apply:subprocess.Popen [[touch, PWNED]]\n",
    "new_allowpkg": "params:\n  x: !!python/object/new:allowpkg.Scale [2.0]\n",
    "name_allowpkg": "params:\n  x: !!python/name:allowpkg.Scale ''\n",
    "module_allowpkg": "params:\n  x: !!python/module:allowpkg ''\n",
    "object_allowpkg": "params:\n  x: !!python/object:allowpkg.Scale {factor: 2}\n",
    "custom_tag": "params:\n  x: !allowpkg 1\n",
    "long_tag": "params:\n  x: !<tag:yaml.org,2002:python/object/apply:os.system> [touch PWNED]\n",
}


@pytest.mark.parametrize("text", TAGS.values(), ids=TAGS.keys())
def test_yaml_tags_are_refused(text: str, sandbox: Sandbox,
                               capsys: pytest.CaptureFixture[str]) -> None:
    if "layers:" not in text:
        text += "layers:\n  - LazyLinear(10)\n"
    spec = sandbox.write(text)
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1, run.err
    assert run.codes() == ["LS104"], run.err
    assert "tag" in run.diagnostics[0][3]
    sandbox.assert_nothing_imported_or_run()


def test_a_yaml_tag_in_an_include_is_refused(sandbox: Sandbox,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.write('params: !!python/object/apply:os.system ["touch PWNED"]\n'
                  "layers:\n  - ReLU\n", "lib.yaml")
    spec = sandbox.write("include: [lib.yaml]\nlayers:\n  - LazyLinear(10)\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1
    assert "LS104" in run.codes()
    sandbox.assert_nothing_imported_or_run()


def test_the_include_may_not_read_outside_the_spec_folder(
        sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    outside = sandbox.folder.parent / "secret.yaml"
    outside.write_text("params: {token: s3cr3t}\nlayers:\n  - ReLU\n", encoding="utf-8")
    spec = sandbox.write("include: [../secret.yaml]\nlayers:\n  - LazyLinear(token)\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1
    assert run.diagnostics[0][:3] == ("LS142", 1, 11)
    assert "s3cr3t" not in run.out + run.err


def test_long_form_keywords_must_be_names(tmp_path):
    """A kwargs key is written into exported code: anything but a Python name is refused."""
    from lazyspec.cli import main

    marker = tmp_path / "pwned"
    spec = tmp_path / "inj.yaml"
    spec.write_text(
        "layers:\n  - LazyLinear(4)\n  - op: Identity\n    kwargs: "
        f"{{\"a=__import__('os').system('touch {marker}'), b\": 1}}\n")
    for args in (["infer", str(spec), "--input", "2,3"],
                 ["export", str(spec), "--input", "2,3", "--to", "pytorch"]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 1
    assert not marker.exists()


def test_export_refuses_a_keyword_that_is_not_a_name():
    from lazyspec.export import ExportError
    from lazyspec.export.literals import identifier

    with pytest.raises(ExportError, match="not a Python name"):
        identifier("a=1), b")
    assert identifier("bias") == "bias"


def test_spec_name_cannot_break_out_of_the_exported_docstring(tmp_path):
    from lazyspec.cli import main

    marker = tmp_path / "pwned"
    spec = tmp_path / "doc.yaml"
    spec.write_text("name: 'x\"\"\" + str(__import__(\"os\").system(\"touch "
                    f"{marker}\")) + \"\"\"y\"'\nlayers:\n  - LazyLinear(4)\n")
    out = tmp_path / "model.py"
    with pytest.raises(SystemExit) as exc:
        main(["export", str(spec), "--input", "2,3", "--to", "pytorch", "--output", str(out)])
    assert exc.value.code == 0
    namespace: dict[str, object] = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)  # running it is the point
    namespace["Model"]()  # type: ignore[operator]
    assert not marker.exists()


def test_a_spec_cannot_write_workflow_commands_to_the_log(cli, write_spec):
    spec = write_spec('"x\\n::error file=README.md,line=1::spoofed\\n::add-mask::s": 1\n'
                      "layers:\n  - ReLU\n")
    r = cli("infer", spec, "--input", "2,3", "--format", "github")
    assert r.code == 1
    for line in (r.stdout + r.stderr).splitlines():
        assert not line.startswith(("::add-mask", "::error file=README.md"))


# --- the rest of the security list: each item, and a test that fails without its protection -------
#
# os.system, subprocess.Popen, builtins.eval, torch.load, torch.hub.load: DANGEROUS_OPS above;
# mypkg.os.system: allowpkg_os_system (refused with and without --allow allowpkg); torch.nn
# attributes that are not module classes: nn_functional and the Parameter/init test; !!python tags:
# TAGS; `__import__` and dunder walks in expressions: EXPRESSIONS. Below: `__import__` and
# dunders as op names, plain attribute access, huge numbers and sequences, and includes that leave
# the spec's folder through `..` or a symlink.

OP_NAMES = {
    "import_call": ("__import__('os')", "LS120"),
    "import_name": ("__import__", "LS120"),
    "eval_name": ("eval('1')", "LS120"),
    "getattr_name": ("getattr", "LS120"),
    "dunder_init": ("nn.Linear.__init__", "LS121"),
    "dunder_subclasses": ("torch.nn.Module.__subclasses__", "LS121"),
    "dunder_class": ("LazyLinear.__class__", "LS121"),
    "dunder_builtins": ("__builtins__.eval('1')", "LS121"),
    "dunder_dict": ("nn.__dict__", "LS121"),
    "method_of_a_layer": ("nn.Linear.forward", "LS121"),
    "torch_nn_submodule_walk": ("nn.modules.linear.os.system('touch PWNED')", "LS121"),
    "torch_nn_init": ("nn.init.xavier_uniform_", "LS121"),
    "torch_nn_parameter": ("nn.Parameter", "LS121"),
}


@pytest.mark.parametrize(("op", "code"), OP_NAMES.values(), ids=OP_NAMES.keys())
def test_import_and_dunders_as_op_names_are_refused(op: str, code: str, sandbox: Sandbox,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(f"layers:\n  - LazyLinear(10)\n  - {op}\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20", "--allow", "allowpkg")
    assert run.code == 1, run.err
    assert run.diagnostics[0][:3] == (code, 3, 5), run.err
    sandbox.assert_nothing_imported_or_run()


ATTRIBUTES = {
    "plain": "d.real",
    "method": "d.bit_length()",
    "dunder": "d.__class__",
    "dunder_on_a_literal": "(1).__class__.__mro__",
    "on_a_list": "widths.__len__()",
}


@pytest.mark.parametrize("expr", ATTRIBUTES.values(), ids=ATTRIBUTES.keys())
def test_attribute_access_in_expressions_is_refused(expr: str, sandbox: Sandbox,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec = sandbox.write(f"params: {{d: 4, widths: [1, 2]}}\nlayers:\n  - LazyLinear({expr})\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1, run.err
    code, line, _, message = run.diagnostics[0]
    assert (code, line) == ("LS123", 3), run.err
    assert "attribute access" in message or "call of" in message


# Huge numbers and sequences: refused before they are computed. Run in a child process with 1 GiB
# of address space and a time limit, so that without the protection the test fails (MemoryError,
# timeout) instead of taking the machine down. The interpreter needs no torch.
HUGE = {
    "power_tower": "10**10**10",
    "power": "2 ** 10**9",
    "float_power": "2.0 ** 10**9",
    "string_repetition": "'a' * 10**9",
    "list_repetition": "[0] * 10**9",
    "nested_repetition": "[[0] * 10**4] * 10**4",
    "product": "(10**200) * (10**200)",
    "list_doubling": "[x, x]",
    "round_digits": "round(5, -10**20)",
    "int_of_a_long_string": "int('9' * 5000)",
}
LIMITS_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from lazyspec.errors import Location, SpecError
from lazyspec.spec.expr import Span, evaluate, parse_expr
out = {}
for text in json.loads(sys.argv[1]):
    start = time.perf_counter()
    try:
        evaluate(parse_expr(Span(text, Location("s.yaml", 1, 1), True)), {"x": [1] * 9000})
        out[text] = ["evaluated", ""]
    except SpecError as e:
        out[text] = [e.diagnostics[0].code, e.diagnostics[0].message]
    except MemoryError:
        out[text] = ["MemoryError", ""]
    out[text].append(time.perf_counter() - start)
print(json.dumps(out))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="resource limits are POSIX")
def test_huge_numbers_and_sequences_are_refused_before_they_are_computed() -> None:
    import json
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", LIMITS_CHILD, json.dumps(list(HUGE.values()))],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for text, (code, message, _seconds) in results.items():
        assert code == "LS126", f"{text}: {code} {message}"
        assert "limit" in message, f"{text}: {message}"


# --- includes stay inside the root spec's folder -------------------------------------------------


def _outside(sandbox: Sandbox) -> Path:
    folder = sandbox.folder.parent / "outside"
    folder.mkdir(exist_ok=True)
    (folder / "secret.yaml").write_text("params: {token: 1234567}\nblocks:\n  B:\n    layers:\n"
                                        "      - ReLU\n", encoding="utf-8")
    return folder


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
@pytest.mark.parametrize("how", ["file_link", "folder_link", "nested_dotdot", "absolute"])
def test_an_include_cannot_leave_the_spec_folder(how: str, sandbox: Sandbox,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    outside = _outside(sandbox)
    include = {"file_link": "lib.yaml", "folder_link": "sub/secret.yaml",
               "nested_dotdot": "inner/lib.yaml", "absolute": str(outside / "secret.yaml")}[how]
    if how == "file_link":
        (sandbox.folder / "lib.yaml").symlink_to(outside / "secret.yaml")
    elif how == "folder_link":
        (sandbox.folder / "sub").symlink_to(outside, target_is_directory=True)
    elif how == "nested_dotdot":  # an included file is held to the root spec's folder too
        (sandbox.folder / "inner").mkdir()
        (sandbox.folder / "inner" / "lib.yaml").write_text(
            "include: [../../outside/secret.yaml]\n", encoding="utf-8")
    spec = sandbox.write(f"include: ['{include}']\nlayers:\n  - LazyLinear(token)\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20")
    assert run.code == 1, run.err
    assert "LS142" in run.codes(), run.err
    assert "1234567" not in run.out + run.err  # nothing of the outside file was read into it
    assert "[10, 20]" not in run.out


def test_includes_inside_the_folder_still_work(sandbox: Sandbox,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The control: `..` that stays inside, and a symlink to a file inside, are fine."""
    (sandbox.folder / "inner").mkdir()
    (sandbox.folder / "inner" / "lib.yaml").write_text("include: [../params.yaml]\n",
                                                       encoding="utf-8")
    (sandbox.folder / "params.yaml").write_text("params: {width: 7}\n", encoding="utf-8")
    includes = ["inner/lib.yaml"]
    if sys.platform != "win32":
        (sandbox.folder / "link.yaml").symlink_to(sandbox.folder / "params.yaml")
        includes.append("link.yaml")
    spec = sandbox.write(f"include: [{', '.join(includes)}]\nlayers:\n  - LazyLinear(width)\n")
    run = sandbox.run(capsys, str(spec), "--input", "2,20", "--format", "json")
    assert run.code == 0, run.err
    assert '"outputs": [\n    [\n      2,\n      7' in run.out
