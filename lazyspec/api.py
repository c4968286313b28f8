"""The Python API: load a spec, build its module, dry-run it.

    spec = lazyspec.load("model.yaml")
    model = spec.build(device="meta")            # an ordinary nn.Module of lazy layers
    result = spec.infer("2,20")                   # an InferResult (plain data)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lazyspec.errors import SpecError
from lazyspec.inputs import InputLike, param_dtype, to_input
from lazyspec.result import InferResult
from lazyspec.spec.model import Spec
from lazyspec.spec.parse import parse_file


@dataclass
class LoadedSpec:
    """A parsed spec whose structure has been checked."""

    spec: Spec

    def options(self, device: str = "meta", dtype: str = "float32",
                params: Mapping[str, Any] | None = None, scale: str | None = None,
                allow: Sequence[str] = (), max_op_tensors: int | None = None) -> Any:
        from lazyspec.compile import BuildOptions

        limits = {} if max_op_tensors is None else {"max_op_tensors": max_op_tensors}
        return BuildOptions(device=device, dtype=param_dtype(dtype), allow=tuple(allow),
                            overrides=dict(params or {}), scale=scale, **limits)

    def build(self, device: str = "meta", dtype: str = "float32",
              params: Mapping[str, Any] | None = None, scale: str | None = None,
              allow: Sequence[str] = ()) -> Any:
        """Compile to an nn.Module of lazy layers (not yet materialised)."""
        from lazyspec.compile import build

        return build(self.spec, self.options(device, dtype, params, scale, allow)).module

    def materialize(self, *inputs: InputLike, device: str = "meta", dtype: str = "float32",
                    params: Mapping[str, Any] | None = None, scale: str | None = None,
                    allow: Sequence[str] = ()) -> Any:
        """Build, run one pass with these input shapes, apply `tie:`; return the nn.Module."""
        from lazyspec import dryrun
        from lazyspec.compile import build

        built = build(self.spec, self.options(device, dtype, params, scale, allow))
        return dryrun.materialize(built, [to_input(i) for i in inputs])

    def infer(self, *inputs: InputLike, device: str = "meta", dtype: str = "float32",
              params: Mapping[str, Any] | None = None, scale: str | None = None,
              allow: Sequence[str] = ()) -> InferResult:
        """Compile and dry-run with the given input shapes."""
        from lazyspec import dryrun

        return dryrun.infer(self.spec, self.options(device, dtype, params, scale, allow),
                            [to_input(i) for i in inputs])


def load(path: str | os.PathLike[str]) -> LoadedSpec:
    """Parse a spec file (and its includes); raise SpecError listing every structural problem."""
    spec = parse_file(path)
    if spec.problems:
        raise SpecError(spec.problems)
    return LoadedSpec(spec)


def infer(path: str | os.PathLike[str], *inputs: InputLike, **options: Any) -> InferResult:
    """`lazyspec infer` as a function: load, compile and dry-run."""
    return load(path).infer(*inputs, **options)
