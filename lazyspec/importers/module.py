"""`lazyspec import module PKG.MODULE:FACTORY`: a spec that rebuilds the nn.Module a factory
returns, with the same module tree and parameter names.

This runs the user's code, as `--allow` does for ops, and only on this explicit command: the
module PKG.MODULE is imported with importlib (the current folder first on sys.path, as
`python -m` does, so a project's own package is found) and FACTORY called with `--args`. Then:

1. a meta twin of the module (`module_summary.meta_twin`: no weights copied) is traced with
   torch.fx, one module instance at a time, and its shapes worked out symbolically
   (`fxtrace.py`);
2. each traced instance becomes a node list (`bodies.py`, `functions.py`, `containers.py`):
   torch.nn layers with their constructor arguments recovered and verified (`layers.py`),
   functions as built-in ops, submodules as blocks (identical ones shared), identical modules in
   sequence as a `repeat:`, free tensors as Parameter/Buffer nodes, ties as `tie:`;
3. the spec text runs through the engine, and its state-dict names and shapes, and on the CPU
   its outputs after `load_state_dict`, must equal the module's (`verify.py`); otherwise nothing
   is written (LS161).

Whatever a spec cannot express is an error naming the module path and why (LS160, exit 1);
what cannot be loaded or called is LS310 (exit 2).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lazyspec.errors import Diagnostic, UsageError, usage_error
from lazyspec.importers import cannot
from lazyspec.importers.bodies import Blocks, Builder, Context, Leaves, Rules
from lazyspec.importers.fxtrace import shape_pass, trace_all
from lazyspec.importers.layers import nameable
from lazyspec.importers.specdoc import Body
from lazyspec.inputs import DTYPES, InputShape
from lazyspec.spec.yamlwrite import Flow, dump

TARGET = re.compile(r"(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*"
                    r"(?:\.[A-Za-z_]\w*)*)\Z")
MAX_ARGS_BYTES = 65_536  # --args: a few keyword arguments, not a data file


@dataclass
class Imported:
    """The spec written for a module, and what was checked."""

    text: str
    params: int
    checked: str  # what the check compared, for the message
    notes: list[str] = field(default_factory=list)


# --- the factory ---------------------------------------------------------------------------------


def check_target(target: str) -> tuple[str, str]:
    """`pkg.models:make_model` -> ("pkg.models", "make_model"); LS301 for anything else."""
    match = TARGET.match(target.strip())
    if not match:
        raise usage_error(f"'{target[:80]}' is not PKG.MODULE:FACTORY",
                          "for example mypkg.models:build_model (a function or class that "
                          "returns an nn.Module)")
    return match.group("module"), match.group("attr")


def parse_args(text: str | None) -> tuple[list[Any], dict[str, Any]]:
    """--args: a JSON object (keyword arguments) or list (positional arguments)."""
    if text is None:
        return [], {}
    if len(text.encode("utf-8", "surrogatepass")) > MAX_ARGS_BYTES:
        raise usage_error(f"--args is {len(text):,} characters, over the limit of "
                          f"{MAX_ARGS_BYTES:,} bytes", "pass a few keyword arguments")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise usage_error(f"--args is not valid JSON: {str(e)[:160]}",
                          """for example --args '{"n_layer": 2}' or --args '[10]'""") from None
    if isinstance(value, dict):
        return [], value
    if isinstance(value, list):
        return value, {}
    raise usage_error(f"--args must be a JSON object or list, not {type(value).__name__}",
                      """for example --args '{"n_layer": 2}' (keywords) or '[10]' (positional)""")


def load_module(target: str, args: list[Any], kwargs: dict[str, Any]) -> nn.Module:
    """Import PKG.MODULE (the current folder first on sys.path) and call FACTORY."""
    module_name, attr = check_target(target)
    folder = os.getcwd()
    if folder not in sys.path:
        sys.path.insert(0, folder)  # as `python -m` does: the project's own package is found
    try:
        obj: Any = importlib.import_module(module_name)
    except BaseException as e:  # the user's module may fail in any way while importing
        if isinstance(e, KeyboardInterrupt):
            raise
        raise _load_error(f"cannot import '{module_name}': {type(e).__name__}: {e}",
                          "is it on the path? lazyspec looks in the current folder first, then "
                          "in the installed packages") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise _load_error(f"'{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise _load_error(f"'{target}' is not callable: FACTORY is a function or a class")
    try:
        module = obj(*args, **kwargs)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        raise _load_error(f"the factory '{target}' raised {type(e).__name__}: {e}",
                          "check --args: a JSON object is keyword arguments, a list "
                          "positional ones") from None
    if not isinstance(module, nn.Module):
        raise _load_error(f"the factory '{target}' returned {type(module).__name__}, not an "
                          "nn.Module")
    return module


def _load_error(message: str, hint: str | None = None) -> UsageError:
    return UsageError([Diagnostic("LS310", message[:600], hint=hint)])


# --- the import ----------------------------------------------------------------------------------


def import_module(module: nn.Module, inputs: Sequence[InputShape],
                  spec_path: str = "imported.yaml", source: str | None = None) -> Imported:
    """The checked spec of `module` at these input shapes (LS160/LS161 when there is none)."""
    from lazyspec.importers.verify import verify
    from lazyspec.module_summary import on_meta

    names, fixed, shapes, dtypes = _bind(module, inputs)
    dtype = _model_dtype(module)
    _check_shared_modules(module)
    _check_lazy(module)
    twin = on_meta(module)
    leaves = Leaves()
    if nameable(twin):
        raise cannot("LS160", f"the model is one torch.nn layer ({type(twin).__name__}): its "
                     "tensors are named without a module path (weight, not 0.weight), which "
                     "no spec node gives", "import a module that holds the layer as an "
                     "attribute, or write the one-line spec by hand")
    trace = trace_all(twin, leaves.is_leaf, names, fixed)
    shape_pass(trace, shapes, dtypes)
    ctx = Context(trace, Blocks(), _originals(module), _rules(), leaves)
    root = Builder(ctx, trace.root).build()
    doc = _document(module, root, ctx, trace, shapes, dtypes)
    text = dump(doc, ascii_only=True)
    checked = verify(module, text, spec_path, inputs, dtype, names, shapes, dtypes)
    notes = []
    if trace.specialised:
        notes.append("sizes are written as they are at the given input (the symbolic shape "
                     f"pass failed: {trace.specialised})")
    else:
        notes += _pinned_notes(doc.get("inputs", {}), shapes)
    head = _header(module, source, inputs, dtype, checked.summary, notes)
    return Imported(head + text, checked.params, checked.summary, notes)


def _rules() -> Rules:
    from lazyspec.importers import containers, functions, tensors

    return Rules(functions.convert, containers.chains, tensors.parameter_text,
                 tensors.buffer_text)


def _bind(module: nn.Module, inputs: Sequence[InputShape],
          ) -> tuple[list[str], dict[str, Any], list[tuple[int, ...]], list[torch.dtype]]:
    """forward's arguments that the --input flags give (named flags by name, the others in
    order), with their shapes and dtypes, and the defaults of those they leave out."""
    if not inputs:
        raise usage_error("give the model's input shapes with --input", "for example --input "
                          "2,3,224,224 or --input 2,64:int64 (one flag per forward argument)")
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    by_name = {i.name: i for i in inputs if i.name}
    for name, flag in by_name.items():
        if name not in [p.name for p in params]:
            raise usage_error(f"--input {flag}: forward has no argument '{name}'",
                              "forward's arguments: " + ", ".join(p.name for p in params))
    unnamed = [i for i in inputs if not i.name]
    given: dict[str, InputShape] = {}
    for p in params:
        if p.name in by_name:
            given[p.name] = by_name[p.name]
        elif unnamed:
            given[p.name] = unnamed.pop(0)
    if unnamed:
        raise usage_error(f"{len(inputs)} --input flags, but forward takes {len(params)} "
                          "argument(s)")
    fixed = {p.name: p.default for p in params if p.name not in given}
    missing = [name for name, default in fixed.items() if default is inspect.Parameter.empty]
    if missing:
        raise usage_error(f"forward needs '{missing[0]}': give its shape with --input",
                          f"--input {missing[0]}=...")
    float_dtype = _model_dtype(module)
    shapes, dtypes = [], []
    for flag in given.values():
        if not all(isinstance(d, int) for d in flag.shape):
            raise usage_error(f"--input {flag}: give sizes, not names",
                              "the spec names the dimensions that may vary itself")
        shapes.append(tuple(int(d) for d in flag.shape))
        dtypes.append(getattr(torch, DTYPES[flag.dtype][0] if flag.dtype else float_dtype))
    return list(given), fixed, shapes, dtypes


def _model_dtype(module: nn.Module) -> str:
    """The one floating dtype of the module's tensors (a spec has one: --dtype)."""
    found: dict[torch.dtype, str] = {}
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.dtype.is_floating_point:
            found.setdefault(t.dtype, name)
    if len(found) > 1:
        listed = ", ".join(f"{str(d).removeprefix('torch.')} ({n})" for d, n in found.items())
        raise cannot("LS160", f"the module's tensors have several dtypes: {listed}",
                     "a spec is built in one dtype (--dtype): convert the module to one")
    return str(next(iter(found), torch.float32)).removeprefix("torch.")


def _check_shared_modules(module: nn.Module) -> None:
    seen: dict[int, str] = {}
    for path, m in module.named_modules(remove_duplicate=False):
        holds = any(True for _ in m.parameters()) or any(True for _ in m.buffers())
        if id(m) in seen and holds and path:
            raise cannot("LS160", f"module '{path}' ({type(m).__name__}) is also registered "
                         f"as '{seen[id(m)]}': one module under two names",
                         "a spec holds a module under one name; call it twice instead")
        seen.setdefault(id(m), path)


def _check_lazy(module: nn.Module) -> None:
    for path, m in module.named_modules():
        if any(isinstance(p, nn.parameter.UninitializedParameter)
               for p in m.parameters(recurse=False)):
            raise cannot("LS160", f"module '{path}' ({type(m).__name__}) is still lazy: its "
                         "sizes are not known yet", "run one forward pass before importing, so "
                         "every lazy layer has its sizes")


def _originals(module: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters(remove_duplicate=False)),
            **dict(module.named_buffers(remove_duplicate=False))}


def _document(module: nn.Module, root: Body, ctx: Context, trace: Any,
              shapes: list[tuple[int, ...]], dtypes: list[torch.dtype]) -> dict[str, Any]:
    doc: dict[str, Any] = {"lazyspec": 1, "name": type(module).__name__,
                           "inputs": _inputs(root, trace, dtypes, module)}
    if ctx.blocks.bodies:
        doc["blocks"] = {name: body.doc(block=True) for name, body in ctx.blocks.bodies.items()}
    doc.update(root.doc(block=False))
    ties = _ties(module)
    if ties:
        doc["tie"] = [Flow(t) for t in ties]
    return doc


def _inputs(root: Body, trace: Any, dtypes: list[torch.dtype],
            module: nn.Module) -> dict[str, Any]:
    """The inputs with the dimensions the shape pass left free as names (B, T, H, W, ...)."""
    from lazyspec.importers.dims import dimension_names

    values = [trace.root.values[n] for n in trace.root.graph.nodes
              if n.op == "placeholder" and n.target in trace.root.inputs]
    shapes = dimension_names(trace, values)
    float_dtype = _model_dtype(module)
    out: dict[str, Any] = {}
    for name, shape, dtype in zip(root.inputs, shapes, dtypes, strict=True):
        text = str(dtype).removeprefix("torch.")
        out[name] = Flow(shape) if text == float_dtype else {"shape": Flow(shape), "dtype": text}
    return out


def _pinned_notes(written: dict[str, Any], shapes: list[tuple[int, ...]]) -> list[str]:
    """Sizes the spec fixes where the model may take any: a dimension given as 0 or 1 (torch's
    symbolic shapes fix those sizes) and a batch dimension a kernel guarded on (LSTM's, an
    interpolation's); never silent, since the spec then refuses inputs the model takes."""
    notes = []
    for (name, decl), given in zip(written.items(), shapes, strict=False):
        shape = decl["shape"] if isinstance(decl, dict) else decl
        ones = [j for j, (w, g) in enumerate(zip(shape, given, strict=False))
                if isinstance(w, int) and g in (0, 1)]
        if ones:
            notes.append(f"input '{name}' is written with size {given[ones[0]]} at dimension "
                         f"{', '.join(map(str, ones))}: torch fixes sizes 0 and 1 when it "
                         "traces; import at a size of 2 or more there to keep it free")
        elif len(shape) >= 2 and isinstance(shape[0], int):
            notes.append(f"input '{name}' is written with batch size {shape[0]}: a kernel "
                         "guarded on it when traced (LSTM's, an interpolation's), so the spec "
                         "takes only that size; edit it to B by hand if the model takes any")
    return notes


def _ties(module: nn.Module) -> list[tuple[str, str]]:
    """A parameter under several names: `[later name, first name]` (GPT-2's tied head)."""
    first: dict[int, str] = {}
    ties = []
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in first:
            ties.append((name, first[id(p)]))
        else:
            first[id(p)] = name
    return ties


def _header(module: nn.Module, source: str | None, inputs: Sequence[InputShape], dtype: str,
            checked: str, notes: list[str]) -> str:
    """Comment lines: where the spec came from and what was checked (one line each)."""
    from lazyspec.textsafe import visible

    cls = type(module)
    lines = [f"Written by `lazyspec import module {source}`" if source else
             "Written by lazyspec's module importer",
             f"from {cls.__module__}.{cls.__qualname__}, at --input "
             + " --input ".join(str(i) for i in inputs)
             + ("" if dtype == "float32" else f" (run it with --dtype {dtype})"),
             f"checked: {checked}", *notes]
    return "".join(f"# {visible(line)[:300]}\n" for line in lines)
