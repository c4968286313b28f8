"""The engine: one request -> one outcome, the same for every entry point, and safe to call again
and again in one process."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from conftest import SPECS

from lazyspec import engine
from lazyspec.config import Budgets
from lazyspec.errors import DryRunError, SpecError, UsageError
from lazyspec.inputs import parse_input
from lazyspec.options import BuildOptions


def request(spec: Path | str, *inputs: str, **fields: object) -> engine.Request:
    return engine.Request(spec, inputs=tuple(parse_input(i) for i in inputs), **fields)  # type: ignore[arg-type]


def test_a_run_gives_the_result_the_module_and_the_sources() -> None:
    outcome = engine.run(request(SPECS / "mlp.yaml", "2,20"))
    assert outcome.error is None and outcome.exit_code == 0
    assert outcome.result is not None and outcome.result.totals.params == 7946
    assert outcome.built is not None
    assert outcome.built.module.get_submodule("0").weight.shape == (256, 20)  # materialised
    assert list(outcome.sources) == [str(SPECS / "mlp.yaml")]


def test_stages_stop_where_asked() -> None:
    parsed = engine.run(request(SPECS / "mlp.yaml", stage="parse"))
    assert parsed.parsed is not None and parsed.built is None and parsed.result is None
    compiled = engine.run(request(SPECS / "mlp.yaml", stage="compile"))
    assert compiled.built is not None and compiled.result is None


def test_a_spec_and_its_include_edited_between_runs_are_read_again(tmp_path: Path) -> None:
    spec, include = tmp_path / "m.yaml", tmp_path / "widths.yaml"
    spec.write_text("include: [widths.yaml]\nlayers:\n  - LazyLinear(d)\n")
    include.write_text("params: {d: 8}\n")
    first = engine.run(request(spec, "2,4"))
    include.write_text("params: {d: 16}\n")
    second = engine.run(request(spec, "2,4"))
    spec.write_text("include: [widths.yaml]\nlayers:\n  - LazyLinear(d)\n  - LazyLinear(3)\n")
    third = engine.run(request(spec, "2,4"))
    assert [o.result.outputs for o in (first, second, third) if o.result] == \
        [[(2, 8)], [(2, 16)], [(2, 3)]]


def test_text_is_run_under_its_virtual_path(tmp_path: Path) -> None:
    (tmp_path / "lib.yaml").write_text("params: {d: 5}\n")
    virtual = tmp_path / "unsaved.yaml"  # not on disk: an editor's buffer
    good = engine.run(request(virtual, "2,3", text="include: [lib.yaml]\nlayers:\n"
                              "  - LazyLinear(d)\n"))
    assert good.result is not None and good.result.outputs == [(2, 5)]
    bad = engine.run(request(virtual, "2,3", text="layers:\n  - Lin(3)\n"))
    assert isinstance(bad.error, SpecError) and bad.exit_code == 1
    (diagnostic,) = bad.diagnostics
    assert diagnostic.location is not None and diagnostic.location.path == str(virtual)
    assert (diagnostic.location.line, diagnostic.location.col) == (2, 5)
    assert bad.sources[str(virtual)] == "layers:\n  - Lin(3)\n"


def test_a_failed_dry_run_is_in_the_outcome_with_what_ran(write_spec) -> None:
    spec = write_spec("layers:\n  - ReLU\n  - Linear(3, 4)\n")
    outcome = engine.run(request(spec, "2,5"))
    assert isinstance(outcome.error, DryRunError) and outcome.result is None
    assert outcome.ran == ["0"]
    assert outcome.report().diagnostics[0].code == "LS201"
    with pytest.raises(DryRunError, match="shape mismatch in node '1'"):
        outcome.raise_error()


def test_budgets_are_findings_next_to_the_result() -> None:
    outcome = engine.run(request(SPECS / "mlp.yaml", "2,20",
                                 budgets=Budgets(expect_output=(2, 11), max_params=1000)))
    assert outcome.result is not None and outcome.error is None
    assert [d.code for d in outcome.findings] == ["LS210", "LS211"]
    assert outcome.exit_code == 1


def test_a_request_that_cannot_run_raises_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown scale 'huge'"):
        engine.run(request(SPECS / "mlp.yaml", "2,20",
                           options=BuildOptions(scale="huge")))
    with pytest.raises(UsageError, match="no shape for input"):
        engine.run(request(SPECS / "mlp.yaml"))


def test_the_garbage_collector_is_paused_for_a_run_only() -> None:
    assert gc.isenabled()
    engine.run(request(SPECS / "mlp.yaml", "2,20"))
    assert gc.isenabled()
    gc.disable()
    try:
        engine.run(request(SPECS / "mlp.yaml", "2,20"))
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()


def test_the_cli_keeps_no_state_between_runs() -> None:
    from lazyspec import cli

    state = [k for k, v in vars(cli).items() if isinstance(v, (dict, list, set))
             and not k.startswith("__") and not k.lstrip("_").isupper()]  # constants are fine
    assert state == [], "module-level containers in the CLI would hold per-run state"
