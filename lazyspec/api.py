"""The Python API: load a spec, build its module, dry-run it. Every call runs the engine.

    spec = lazyspec.load("model.yaml")
    model = spec.build(device="meta")            # an ordinary nn.Module of lazy layers
    result = spec.infer("2,20")                   # an InferResult (plain data)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lazyspec import engine
from lazyspec.errors import SpecError
from lazyspec.inputs import InputLike, param_dtype, to_input
from lazyspec.options import BuildOptions
from lazyspec.result import InferResult
from lazyspec.spec.model import Spec

if TYPE_CHECKING:
    from lazyspec.module_summary import Summary


@dataclass
class LoadedSpec:
    """A parsed spec whose structure has been checked."""

    spec: Spec
    text: str  # the spec file's text as loaded: every call below runs this version

    def options(self, device: str = "meta", dtype: str = "float32",
                params: Mapping[str, Any] | None = None, scale: str | None = None,
                allow: Sequence[str] = (), max_op_tensors: int | None = None) -> BuildOptions:
        limits = {} if max_op_tensors is None else {"max_op_tensors": max_op_tensors}
        return BuildOptions(device=device, dtype=param_dtype(dtype), allow=tuple(allow),
                            overrides=dict(params or {}), scale=scale, **limits)

    def run(self, inputs: Sequence[InputLike], stage: engine.Stage, **options: Any,
            ) -> engine.Outcome:
        """One engine run of this spec; raises the error that stopped it."""
        outcome = engine.run(engine.Request(
            self.spec.path, self.text, tuple(to_input(i) for i in inputs),
            self.options(**options), stage=stage))
        outcome.raise_error()
        return outcome

    def build(self, device: str = "meta", dtype: str = "float32",
              params: Mapping[str, Any] | None = None, scale: str | None = None,
              allow: Sequence[str] = ()) -> Any:
        """Compile to an nn.Module of lazy layers (not yet materialised)."""
        outcome = self.run((), "compile", device=device, dtype=dtype, params=params,
                           scale=scale, allow=allow)
        assert outcome.built is not None
        return outcome.built.module

    def materialize(self, *inputs: InputLike, device: str = "meta", dtype: str = "float32",
                    params: Mapping[str, Any] | None = None, scale: str | None = None,
                    allow: Sequence[str] = ()) -> Any:
        """Build, run one pass with these input shapes, apply `tie:`; return the nn.Module."""
        outcome = self.run(inputs, "run", device=device, dtype=dtype, params=params,
                           scale=scale, allow=allow)
        assert outcome.built is not None
        return outcome.built.module

    def infer(self, *inputs: InputLike, device: str = "meta", dtype: str = "float32",
              params: Mapping[str, Any] | None = None, scale: str | None = None,
              allow: Sequence[str] = ()) -> InferResult:
        """Compile and dry-run with the given input shapes."""
        outcome = self.run(inputs, "run", device=device, dtype=dtype, params=params,
                           scale=scale, allow=allow)
        assert outcome.result is not None
        return outcome.result


def load(path: str | os.PathLike[str]) -> LoadedSpec:
    """Parse a spec file (and its includes); raise SpecError listing every structural problem."""
    outcome = engine.run(engine.Request(path, stage="parse"))
    outcome.raise_error()
    spec = outcome.parsed
    assert spec is not None
    if spec.problems:
        raise SpecError(spec.problems)
    return LoadedSpec(spec, outcome.sources[spec.path])


def infer(path: str | os.PathLike[str], *inputs: InputLike, **options: Any) -> InferResult:
    """`lazyspec infer` as a function: load, compile and dry-run."""
    return load(path).infer(*inputs, **options)


def summary(module: Any, *inputs: Any, device: str = "meta", dtype: str | None = None,
            max_params: int | str | None = None, max_bytes: int | str | None = None,
            expect_output: Sequence[int] | str | None = None) -> Summary:
    """The dry run of any nn.Module: `lazyspec infer` without a spec (torchinfo's use).

    `inputs` are shapes (`(2, 3, 224, 224)`), `--input` strings (`"2,64:int64"`) or tensors.
    device="meta" (the default) runs a meta twin of the module, allocating nothing; "cpu" or
    "cuda" runs the module itself where it already is. The module is never modified (see
    lazyspec.module_summary). Budgets fail with BudgetError, which holds the result; a
    submodule that fails is DryRunError at its path and class.
    The result is an InferResult (a `Summary`, whose text is the table: `str(result)`;
    `.report("json")` for the other formats).
    """
    from lazyspec.config import Budgets, parse_bytes, parse_count, parse_shape
    from lazyspec.module_summary import summarize_module

    expected = parse_shape(expect_output) if isinstance(expect_output, str) else \
        tuple(expect_output) if expect_output is not None else None
    budgets = Budgets(expected, parse_count(max_params) if max_params is not None else None,
                      parse_bytes(max_bytes) if max_bytes is not None else None)
    return summarize_module(module, inputs, device=device, dtype=dtype, budgets=budgets)


def graph_for(spec_path: str | os.PathLike[str], inputs: Sequence[InputLike] = (), *,
              fmt: str = "mermaid", depth: int | None = None, **build_options: Any) -> str:
    """`lazyspec graph` as a function: the spec as Mermaid or DOT text.

    Shapes are on the edges when `inputs` are given, or when the spec declares every dimension
    of every input as a number. `build_options` are those of `LoadedSpec.build`: device, dtype,
    params, scale, allow.
    """
    from lazyspec.graph import build_graph, diagram
    from lazyspec.report.graph_text import render

    loaded = load(spec_path)
    outcome = diagram(spec_path, [to_input(i) for i in inputs], loaded.options(**build_options))
    outcome.raise_error()
    assert outcome.built is not None
    return render(build_graph(outcome.built, outcome.result, depth), fmt)
