"""`lazyspec export --to pytorch`: a standalone Python module (torch only) with a `Model` class
that builds the spec's parameter names and shapes and runs its data flow.

A built-in op is written as a torch expression over its inputs (INLINE_OPS), or, when it has
parameters (MODULE_OPS), built in `__init__` as a module. Where the expression calls a function of
lazyspec.builtin_ops (the window ops, Rotary, ...) or the module is one of its classes, that source
is copied into the generated file once, with the functions it calls (COPIED).
"""

from __future__ import annotations

import inspect
import keyword
import symtable
import textwrap
from collections.abc import Callable
from typing import Any

from lazyspec import builtin_ops, ops
from lazyspec.builtin_ops import BUILTIN_OPS
from lazyspec.compile import Built
from lazyspec.export.literals import identifier, py_literal
from lazyspec.export.plan import PY_RESERVED, SPEC_RESERVED, Body, Call, Node, header, make_plan
from lazyspec.result import InferResult
from lazyspec.tensors import BUFFER_SCHEMES, TensorDecl, init_code
from lazyspec.textsafe import visible


def _inline_ops() -> dict[str, Callable[[list[str], dict[str, Any]], str]]:
    """Each built-in op as a torch expression over its inputs' variables and bound arguments."""
    return {
        "Add": lambda xs, a: " + ".join(xs),
        "Mul": lambda xs, a: " * ".join(xs),
        "Concat": lambda xs, a: f"torch.cat([{', '.join(xs)}], dim={a['dim']!r})",
        "Chunk": lambda xs, a: f"torch.chunk({xs[0]}, {a['n']!r}, dim={a['dim']!r})",
        "Split": lambda xs, a: f"torch.split({xs[0]}, {py_literal(a['sizes'])}, dim={a['dim']!r})",
        "Reshape": lambda xs, a: f"torch.reshape({xs[0]}, {py_literal(tuple(a['shape']))})",
        "Permute": lambda xs, a: f"{xs[0]}.permute({py_literal(tuple(a['dims']))})",
        "Transpose": lambda xs, a: f"{xs[0]}.transpose({a['a']!r}, {a['b']!r})",
        "MatMul": lambda xs, a: f"torch.matmul({xs[0]}, {xs[1]})",
        "Mean": lambda xs, a: (f"{xs[0]}.mean(dim={py_literal(_dims(a['dim']))}, "
                               f"keepdim={a['keepdim']!r})"),
        "ScaledDotProductAttention": _sdpa,
        "Positions": lambda xs, a: (f"torch.arange({xs[0]}.shape[{a['dim']!r}], "
                                    f"dtype=torch.long, device={xs[0]}.device)"),
        "Scale": lambda xs, a: f"{xs[0]} * {py_literal(a['factor'])}",
        "Roll": lambda xs, a: (f"torch.roll({xs[0]}, {py_literal(_dims(a['shifts']))}, "
                               f"{py_literal(_dims(a['dims']))})"),
        "ExpandAs": lambda xs, a: (f"expand_as_dims({xs[0]}, {xs[1]}, "
                                   f"{py_literal(tuple(a['dims']))})"),
        "Select": lambda xs, a: f"{xs[0]}.select({a['dim']!r}, {a['index']!r})",
        "Unsqueeze": lambda xs, a: f"{xs[0]}.unsqueeze({a['dim']!r})",
        "Squeeze": lambda xs, a: f"{xs[0]}.squeeze({a['dim']!r})",
        "Index": lambda xs, a: f"index_table({xs[0]}, {xs[1]}, {a['dim']!r})",
        "WindowPartition": lambda xs, a: f"window_partition({xs[0]}, {a['window']!r})",
        "WindowMerge": lambda xs, a: f"window_merge({xs[0]}, {xs[1]}, {a['window']!r})",
        "ShiftedWindowMask": lambda xs, a: (f"shifted_window_mask({xs[0]}, {a['window']!r}, "
                                            f"{a['shift']!r})"),
        "PatchMerge": lambda xs, a: f"patch_merge({xs[0]})",
        "Rotary": lambda xs, a: (f"rotary_embedding({xs[0]}, {a['head_dim']!r}, "
                                 f"{py_literal(a['base'])})"),
        "CausalMask": lambda xs, a: (f"causal_mask({xs[0]})" if a["window"] is None
                                     else f"causal_mask({xs[0]}, {a['window']!r})"),
    }


def _dims(dim: Any) -> Any:
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _sdpa(xs: list[str], a: dict[str, Any]) -> str:
    dropout = f"{a['dropout']!r} if self.training else 0.0" if a["dropout"] else "0.0"
    gqa = ", enable_gqa=True" if a["enable_gqa"] else ""
    mask = f", attn_mask={xs[3]}" if len(xs) > 3 else ""
    return (f"F.scaled_dot_product_attention({', '.join(xs[:3])}, is_causal={a['is_causal']!r}, "
            f"scale={py_literal(a['scale'])}, dropout_p={dropout}{gqa}{mask})")


INLINE_OPS = _inline_ops()
# Built-in ops with parameters: a module built in __init__ (its class copied into the file).
MODULE_OPS = frozenset({"LayerNorm2d", "T5RelativeAttentionBias"})
# The code of lazyspec.builtin_ops an op's export form uses: copied with what it calls.
COPIED: dict[str, Callable[..., Any]] = {
    "ExpandAs": builtin_ops.expand_as_dims,
    "Index": builtin_ops.index_table,
    "WindowPartition": builtin_ops.window_partition,
    "WindowMerge": builtin_ops.window_merge,
    "ShiftedWindowMask": builtin_ops.shifted_window_mask,
    "PatchMerge": builtin_ops.patch_merge,
    "Rotary": builtin_ops.rotary_embedding,
    "CausalMask": builtin_ops.causal_mask,
    "LayerNorm2d": builtin_ops.LayerNorm2d,
    "T5RelativeAttentionBias": builtin_ops.T5RelativeAttentionBias,
}
# Every name builtin_ops defines: copied code may use any, so no block or variable takes them.
COPY_RESERVED = frozenset({name for name, obj in vars(builtin_ops).items()
                           if getattr(obj, "__module__", None) == builtin_ops.__name__} | {"math"})


def copied_source(objects: list[Callable[..., Any]]) -> list[str]:
    """The source of each object and of the builtin_ops functions and classes it uses, each
    once, what is used before its user."""
    out: dict[str, str] = {}

    def visit(obj: Callable[..., Any]) -> None:
        name = obj.__name__
        if name in out:
            return
        out[name] = ""  # taken: a cycle stops here
        source = textwrap.dedent(inspect.getsource(obj))
        for used in sorted(globals_read(source)):
            dep = getattr(builtin_ops, used, None)
            if callable(dep) and getattr(dep, "__module__", None) == builtin_ops.__name__ \
                    and dep is not obj:
                visit(dep)
        out.pop(name)
        out[name] = source

    for obj in objects:
        visit(obj)
    return list(out.values())


def globals_read(source: str) -> set[str]:
    """The global names the code reads (builtins included; annotations left out: the generated
    file does not evaluate them)."""
    top = symtable.symtable("from __future__ import annotations\n" + source, "<copied>", "exec")
    out: set[str] = set()
    tables = [top]
    while tables:
        t = tables.pop()
        out.update(sym.get_name() for sym in t.get_symbols() if sym.is_referenced()
                   and (t.get_type() == "module" or sym.is_global()))
        tables.extend(t.get_children())
    return out


def _is_inline(call: Call | None) -> bool:
    return (call is not None and BUILTIN_OPS.get(call.cls.__name__) is call.cls
            and call.cls.__name__ in INLINE_OPS)


def _builtin_name(call: Call) -> str | None:
    name = call.cls.__name__
    return name if BUILTIN_OPS.get(name) is call.cls else None


def _inline(call: Call, xs: list[str]) -> str:
    bound = inspect.signature(call.cls).bind(*call.args, **dict(call.kwargs))
    bound.apply_defaults()
    return INLINE_OPS[call.cls.__name__](xs, dict(bound.arguments))


CHAIN = '''class Chain(nn.Sequential):
    """Copies applied in sequence (a named `repeat:`): the first takes every input; each later
    one takes the copy before it and, with `returns` above 0 (language version 2), the other
    inputs too; a copy that returns several values hands on all of them."""

    def __init__(self, layers, returns=0):
        super().__init__(OrderedDict(layers))
        self.returns = returns

    def forward(self, *xs):
        layers = list(self)
        out = layers[0](*xs)
        for layer in layers[1:]:
            if self.returns == 0:
                out = layer(out)
                continue
            head = tuple(out) if self.returns > 1 else (out,)
            out = layer(*head, *xs[len(head):])
        return out
'''


def pytorch_code(built: Built, result: InferResult, class_name: str = "Model") -> str:
    """A standalone Python module: one nn.Module class (and one per generated block) that builds
    the non-lazy layers with the spec's parameter names and shapes, and whose forward runs the
    spec's data flow, with the built-in ops written as torch calls. It needs torch only."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise ValueError(f"class name {class_name!r} is not a Python identifier")
    if class_name in PY_RESERVED | COPY_RESERVED:
        raise ValueError(f"class name {class_name!r} is a name the generated code uses")
    plan = make_plan(built, SPEC_RESERVED | PY_RESERVED | COPY_RESERVED | {class_name})
    writer = _CodeWriter()
    classes = [writer.cls(name, body, f"Block {name} of the exported spec.", [])
               for name, body in plan.blocks.items()]
    shapes = ", ".join(f"{r.name} {list(r.shape)} {r.dtype}" for r in result.inputs)
    outs = ", ".join(str(list(o)) if isinstance(o, tuple) else str(o) for o in result.outputs)
    doc = f"{built.spec.name or 'The model'}: inputs {shapes}; output {outs}."
    ties = [_tie_line(t.target, t.source) for t in built.ties]
    classes.append(writer.cls(class_name, plan.root, doc, ties))
    head = [_doc(line) for line in header(built, result, "", plan.notes()).splitlines()]
    lines = ['"""' + head[0], "", *head[1:-1], head[-1] + '"""', "",
             "from __future__ import annotations", ""]
    copied = copied_source(writer.copied)
    used = set().union(*(globals_read(source) for source in copied))
    imports = ["from collections import OrderedDict"] * writer.uses_chain
    imports += ["import math"] * ("math" in used) + ["import torch"]
    if writer.uses_f or "F" in used:
        imports.append("import torch.nn.functional as F")
    imports += [f"import {m}" for m in sorted(writer.modules)]
    lines += [*imports, "from torch import nn", "", "", ""]
    return "\n".join(lines) + "\n\n".join([*copied, *[CHAIN] * writer.uses_chain, *classes])


def _doc(text: str) -> str:
    """Text that is safe inside a triple-quoted docstring: no quote can close it, and control
    characters, NUL and lone surrogates show as escapes (`\\x00`) in the docstring itself:
    Python source cannot hold a NUL, UTF-8 cannot write a surrogate, nor can a class's
    docstring hold one. `##[` is written `#\\x23[`, the same text to Python but no GitHub
    workflow command to a log that shows the file."""
    return visible(text).replace("\\", "\\\\").replace('"', '\\"').replace("##[", "#\\x23[")


def _tie_line(target: str, source: str) -> str:
    def owner(path: str) -> tuple[str, str]:
        sub, _, attr = path.rpartition(".")
        return (f'self.get_submodule("{sub}")' if sub else "self"), attr

    (t_mod, t_attr), (s_mod, s_attr) = owner(target), owner(source)
    src = f"{s_mod}.{s_attr}" if _attr_ok(s_attr) else f"getattr({s_mod}, {s_attr!r})"
    comment = f"# tie: {target} is {source}\n        "
    if _attr_ok(t_attr):
        return f"{comment}{t_mod}.{t_attr} = {src}"
    return f"{comment}setattr({t_mod}, {t_attr!r}, {src})"


def _attr(name: str) -> str:
    """The expression for an attribute of `self`: `self.fc`, `getattr(self, "0")`."""
    return f"self.{name}" if _attr_ok(name) else f'getattr(self, "{name}")'


def _attr_ok(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


class _CodeWriter:
    def __init__(self) -> None:
        self.modules: set[str] = set()  # imports for classes outside torch.nn
        self.uses_f = False
        self.uses_chain = False
        self.copied: list[Callable[..., Any]] = []  # builtin_ops code the file needs

    def copy(self, op: str) -> None:
        if op in COPIED and COPIED[op] not in self.copied:
            self.copied.append(COPIED[op])

    def cls(self, name: str, body: Body, doc: str, ties: list[str]) -> str:
        init = [line for node in body.nodes for line in self.register(node)] + ties
        lines = [f"class {name}(nn.Module):", f'    """{_doc(doc)}"""', "",
                 "    def __init__(self) -> None:", "        super().__init__()",
                 *(f"        {line}" for line in init), "",
                 *(f"    {line}" for line in self.forward(body))]
        return "\n".join(lines) + "\n"

    def build(self, node: Node) -> str:
        """The expression that builds the node's module."""
        if node.call is not None:
            call = node.call
            builtin = _builtin_name(call)
            if ops.torch_nn_ops().get(call.cls.__name__) is call.cls:
                where = f"nn.{call.cls.__name__}"
            elif builtin is not None:  # a built-in op with parameters: its class is copied
                self.copy(builtin)
                where = builtin
            else:
                self.modules.add(call.cls.__module__)
                where = f"{call.cls.__module__}.{call.cls.__qualname__}"
            parts = [py_literal(a) for a in call.args]
            parts += [f"{identifier(k)}={py_literal(v)}" for k, v in call.kwargs]
            return f"{where}({', '.join(parts)})"
        return f"{node.block}()"

    def register(self, node: Node) -> list[str]:
        """The lines of __init__ that build the node's module or tensor."""
        if node.tensor is not None:
            return self.tensor(node.local, node.tensor)
        if node.kind in ("share", "skip") or _is_inline(node.call):
            return []  # built-in ops are written inline in forward
        value = self.build(node)
        if node.kind == "repeat":
            self.uses_chain = True
            names = node.copy_names or tuple(str(i) for i in range(node.count))
            value = (f"Chain(((name, {value}) for name in {py_literal(list(names))}), "
                     f"returns={node.threads})")
        target = _attr(node.local)
        lines = [f"{target} = {value}" if _attr_ok(node.local)
                 else f'self.add_module("{node.local}", {value})']
        if node.frozen:
            lines.append(f"{target}.requires_grad_(False)  # trainable: false")
        return lines

    def tensor(self, name: str, decl: TensorDecl) -> list[str]:
        """A Parameter node: an nn.Parameter filled by its init; a Buffer node: its scheme's
        value (the scheme's source is written into the module)."""
        if decl.kind == "buffer":
            assert decl.scheme is not None
            if BUFFER_SCHEMES[decl.scheme] not in self.copied:  # its source goes into the file
                self.copied.append(BUFFER_SCHEMES[decl.scheme])
            args = ", ".join(py_literal(a) for a in decl.args)
            persistent = "" if decl.persistent else ", persistent=False"
            return [f"self.register_buffer({name!r}, {decl.scheme}({args}){persistent})"]
        shape = ", ".join(str(d) for d in decl.shape)
        grad = "" if decl.trainable else ", requires_grad=False"
        value = f"nn.Parameter(torch.empty({shape}){grad})"
        create = f"{_attr(name)} = {value}" if _attr_ok(name) \
            else f"self.register_parameter({name!r}, {value})"
        return [create, init_code(_attr(name), decl.init)]

    def forward(self, body: Body) -> list[str]:
        taken = set(PY_RESERVED) | COPY_RESERVED | {"self"}
        names: list[str] = []
        for name in body.input_names:
            names.append(_fresh_var(name, taken))
        lines = [f"def forward(self, {', '.join(names)}):"]
        for i, node in enumerate(body.nodes):
            xs = [_pick(names, p.slot, p.output) for p in node.inputs]
            if node.kind == "skip":
                names.append(xs[0])
                lines.append(f"    # {node.local}: skipped ({node.skipped}), passes "
                             f"{xs[0]} through")
                continue
            var = _fresh_var(node.local if node.named else f"x{node.local}", taken)
            names.append(var)
            lines.append(f"    {var} = {self.apply(body, i, xs)}")
        outs = [_pick(names, p.slot, p.output) for p in body.outputs]
        lines.append(f"    return {', '.join(outs)}")
        return lines

    def apply(self, body: Body, i: int, xs: list[str]) -> str:
        node = body.nodes[i]
        if node.kind == "share":
            node = next(n for n in body.nodes if n.local == node.share)
        if node.call is not None and _is_inline(node.call):
            self.uses_f |= node.call.cls.__name__ == "ScaledDotProductAttention"
            self.copy(node.call.cls.__name__)
            out = _inline(node.call, xs)
            for _ in range(node.count - 1 if node.kind == "repeat" else 0):
                # a later copy takes the copy before it (version 2: and the other inputs)
                out = _inline(node.call, [f"({out})", *(xs[1:] if node.threads else [])])
            return out
        if node.tensor is not None:
            return _attr(node.local)
        return f"{_attr(node.local)}({', '.join(xs)})"


def _fresh_var(base: str, taken: set[str]) -> str:
    name = base if base.isidentifier() else "x"
    while name in taken or keyword.iskeyword(name):
        name += "_"
    taken.add(name)
    return name


def _pick(names: list[str], slot: int, index: int | None) -> str:
    return names[slot] if index is None else f"{names[slot]}[{index}]"


