"""The members of an nn.ModuleList or nn.ModuleDict that a module's forward calls one after another
(`for block in self.h: x = block(x)`): one node named as the container. Identical members (the
same op call, or the same block) become a named `repeat:` (GPT-2's `h.0` ... `h.11`); others a
block of their own holding them in order. Members called out of order, not all of them, or with
other work between them are an error naming the container: a spec cannot hold them apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch.fx as fx
from torch import nn

from lazyspec.importers import cannot
from lazyspec.importers.bodies import Builder, Unexpressible, _wanted_name
from lazyspec.importers.specdoc import Body, Node, Ref, valid_name

Handler = Callable[[fx.Node], None]


def chains(b: Builder) -> dict[fx.Node, Handler]:
    """For each call of a container's member: what the body builder does with it instead."""
    groups: dict[str, list[fx.Node]] = {}
    for n in b.t.graph.nodes:
        if n.op != "call_module" or "." not in str(n.target):
            continue
        head, _, rest = str(n.target).partition(".")
        container = b.module.get_submodule(head)
        if isinstance(container, (nn.ModuleList, nn.ModuleDict)) and "." not in rest:
            groups.setdefault(head, []).append(n)
    handlers: dict[fx.Node, Handler] = {}
    for head, calls in groups.items():
        handlers.update(_group(b, head, calls))
    return handlers


def _group(b: Builder, head: str, calls: list[fx.Node]) -> dict[fx.Node, Handler]:
    container = b.module.get_submodule(head)
    members = [name for name, m in container.named_children()]
    called = [str(c.target).partition(".")[2] for c in calls]
    kind = type(container).__name__
    if called != members:
        raise cannot("LS160", f"{b.where} calls the modules of its {kind} '{head}' as "
                     f"{_listed(called)}, not each of {_listed(members)} once in order",
                     "a spec holds a container's modules as nodes called one after another")
    extras = _extras(calls[0])
    for before, after in itertools.pairwise(calls):
        if after.args[:1] != (before,) or _extras(after) != extras or \
                set(before.users) != {after}:
            raise cannot("LS160", f"{b.where}: the modules of its {kind} '{head}' are not "
                         f"called one after another ('{before.target}' then "
                         f"'{after.target}', each taking only the one before)",
                         "a spec holds a container's modules as nodes called in sequence; "
                         "move the work between them into the modules")

    def first(n: fx.Node) -> None:
        b.group_called.add(head)
        try:
            b.refs[calls[-1]] = _emit(b, head, container, calls)
        except Unexpressible as e:  # an error once something reads the chain's value
            b.refs[calls[-1]] = Unexpressible(f"the call of '{head}' {e}")

    def later(n: fx.Node) -> None:
        if n is not calls[-1]:
            b.refs[n] = Unexpressible(f"is an inner value of the {kind} '{head}'")

    return {c: (first if i == 0 else later) for i, c in enumerate(calls)}


def _extras(call: fx.Node) -> tuple[tuple[object, ...], dict[str, object]] | None:
    """A member call's arguments after the running value, when they are literals (the same at
    every call: `is_causal=False`, checked against forward's defaults with the first call);
    None when one is a tensor (a side input, which a container's chain cannot pass)."""
    args: tuple[object, ...] = tuple(call.args[1:])
    kwargs: dict[str, object] = dict(call.kwargs)
    leaves = [*args, *kwargs.values()]
    return None if any(isinstance(v, fx.Node) for v in leaves) else (args, kwargs)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"[{shown}]"


def _emit(b: Builder, head: str, container: nn.Module, calls: list[fx.Node]) -> Ref:
    """The container's node: a repeat of identical members, else a block holding them."""
    nodes: list[Node] = []
    for c in calls:
        name = str(c.target).partition(".")[2]
        member = container.get_submodule(name)
        traced = b.ctx.trace.child(b.t, c)
        node = b.module_node(member, name, traced, [Ref(len(nodes) - 1)] if nodes else
                             [Ref(input="input")], c)
        if node.name is not None and not valid_name(node.name):
            raise cannot("LS160", f"{b.where}: '{head}' holds a module named '{name}', which "
                         "is not a valid spec node name")
        nodes.append(node)
    first = container.get_submodule(str(calls[0].target).partition(".")[2])
    inputs = b.module_inputs(calls[0], first, b.ctx.trace.child(b.t, calls[0]))
    if len(inputs) != 1:
        raise Unexpressible(f"calls the first module of '{head}' with {len(inputs)} tensors: "
                            "a container's modules take one tensor each")
    outputs = nodes[-1].outputs
    same = {(n.op, n.trainable, n.outputs, n.repeat) for n in nodes}
    if isinstance(container, nn.ModuleList) and len(same) == 1 and nodes[0].repeat is None:
        return b.add(Node(head, nodes[0].op, inputs, repeat=len(nodes), stateful=True,
                          trainable=nodes[0].trainable, outputs=outputs))
    body = Body(inputs=["input"], nodes=nodes, outputs=[Ref(len(nodes) - 1)])
    block = b.ctx.blocks.name_for(body, _wanted_name(container, head))
    return b.add(Node(head, block, inputs, stateful=True, outputs=outputs))

