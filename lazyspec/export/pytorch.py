"""`lazyspec export --to pytorch`: a standalone Python module (torch only) with a `Model` class
that builds the spec's parameter names and shapes and runs its data flow."""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable
from typing import Any

from lazyspec import ops
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
        "Positions": lambda xs, a: (f"torch.arange({xs[0]}.shape[-1], dtype=torch.long, "
                                    f"device={xs[0]}.device)"),
    }


def _dims(dim: Any) -> Any:
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _sdpa(xs: list[str], a: dict[str, Any]) -> str:
    dropout = f"{a['dropout']!r} if self.training else 0.0" if a["dropout"] else "0.0"
    gqa = ", enable_gqa=True" if a["enable_gqa"] else ""
    return (f"F.scaled_dot_product_attention({', '.join(xs[:3])}, is_causal={a['is_causal']!r}, "
            f"scale={py_literal(a['scale'])}, dropout_p={dropout}{gqa})")


INLINE_OPS = _inline_ops()


def _is_inline(call: Call | None) -> bool:
    return call is not None and BUILTIN_OPS.get(call.cls.__name__) is call.cls


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
    plan = make_plan(built, SPEC_RESERVED | PY_RESERVED | {class_name})
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
    imports = ["from collections import OrderedDict"] * writer.uses_chain + ["import torch"]
    if writer.uses_f:
        imports.append("import torch.nn.functional as F")
    imports += [f"import {m}" for m in sorted(writer.modules)]
    lines += [*imports, "from torch import nn", "", "", ""]
    helpers = [inspect.getsource(BUFFER_SCHEMES[name]) for name in sorted(writer.schemes)]
    return "\n".join(lines) + "\n\n".join([CHAIN] * writer.uses_chain + helpers + classes)


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
        self.schemes: set[str] = set()  # buffer schemes whose source the module carries

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
            if ops.torch_nn_ops().get(call.cls.__name__) is call.cls:
                where = f"nn.{call.cls.__name__}"
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
            self.schemes.add(decl.scheme)
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
        taken = set(PY_RESERVED) | {"self"}
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


