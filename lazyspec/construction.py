"""Bounds the work of building one op: the modules and tensors its constructor creates.

The node limit counts spec nodes, but one node can ask for an unbounded model:
`RNN(8, 8, num_layers=200000)` registers 800,000 parameters, `Transformer(num_encoder_layers=
20000)` deep-copies its layer 20,000 times. While an op is built, torch's global registration
hooks (every module, parameter and buffer that a module registers) and `nn.Module.__setstate__`
(which `copy.deepcopy` calls for every module it copies) count what is created; past the limit the
count raises `ConstructionLimit`, so the build stops within one layer instead of running for
minutes. The argument responsible is then found by building the op again with each number (or
list) argument at two small values: the one whose value changes the count is named.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn
from torch.nn.modules import module as torch_module

from lazyspec.options import MAX_OP_TENSORS

__all__ = ["MAX_OP_TENSORS"]  # the limit lives with the options (torch-free); tests read it here
PROBES = 4  # arguments tried when naming the responsible one, largest first


class ConstructionLimit(Exception):
    """An op's constructor created more than `limit` modules and tensors."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit:,} modules and tensors")
        self.limit = limit


class Budget:
    """Counts the modules and tensors created on this thread while it is active."""

    def __init__(self, limit: int):
        self.limit, self.count = limit, 0
        self.seen: dict[int, object] = {}  # holds what it counted, so no id is reused

    def add(self, obj: object) -> None:
        if obj is None or id(obj) in self.seen:
            return
        self.seen[id(obj)] = obj
        self.count += 1
        if self.count > self.limit:
            raise ConstructionLimit(self.limit)


_active = threading.local()  # .budget: the budget of the construction running on this thread
_lock = threading.Lock()
_users = 0  # constructions in progress on any thread; the hooks stay installed while > 0
_handles: list[Any] = []
_original_setstate: Callable[[nn.Module, dict[str, Any]], None] = nn.Module.__setstate__


def _current() -> Budget | None:
    return getattr(_active, "budget", None)


def _on_register(_module: nn.Module, _name: str, value: object) -> None:
    budget = _current()
    if budget is not None:
        budget.add(value)
    # returns None: a registration hook that returns a value would replace what is registered


def _counting_setstate(self: nn.Module, state: dict[str, Any]) -> None:
    _original_setstate(self, state)
    budget = _current()
    if budget is not None:  # a deep copy: the module and the tensors it holds are new
        budget.add(self)
        for value in (*state.get("_parameters", {}).values(), *state.get("_buffers", {}).values()):
            budget.add(value)


def _install() -> None:
    global _users
    with _lock:
        if _users == 0:
            _handles[:] = [
                torch_module.register_module_module_registration_hook(_on_register),
                torch_module.register_module_parameter_registration_hook(_on_register),
                torch_module.register_module_buffer_registration_hook(_on_register),
            ]
            nn.Module.__setstate__ = _counting_setstate  # type: ignore[method-assign]
        _users += 1


def _uninstall() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users == 0:
            for handle in _handles:
                handle.remove()
            _handles.clear()
            nn.Module.__setstate__ = _original_setstate  # type: ignore[method-assign]


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Keep the counting hooks installed through the body: many bounded builds in a row (a
    whole spec) then pay for installing them once. They count only inside `bounded`."""
    _install()
    try:
        yield
    finally:
        _uninstall()


@contextlib.contextmanager
def bounded(limit: int) -> Iterator[Budget]:
    """Count what is built in the body (on this thread); raise ConstructionLimit past `limit`."""
    budget, outer = Budget(limit), _current()
    with installed():
        _active.budget = budget
        try:
            yield budget
        finally:
            _active.budget = outer


def count_created(build: Callable[[], object], limit: int) -> int | None:
    """What `build` creates, or None when it fails or passes `limit` (warnings silenced)."""
    try:
        with warnings.catch_warnings(), bounded(limit) as budget:
            warnings.simplefilter("ignore")
            build()
    except Exception:  # any failure, the limit included: this probe says nothing
        return None
    return budget.count


def responsible_argument(build: Callable[[list[Any], dict[str, Any]], object],
                         args: list[Any], kwargs: dict[str, Any], limit: int,
                         ) -> int | str | None:
    """The argument (position, or keyword name) that makes the op create so much: built with it
    at two small values, the op stays under the limit and the count changes. Largest first."""
    for key, value in _candidates(args, kwargs)[:PROBES]:
        counts = []
        for small in _small_values(value):
            trial_args, trial_kwargs = list(args), dict(kwargs)
            if isinstance(key, int):
                trial_args[key] = small
            else:
                trial_kwargs[key] = small
            counts.append(count_created(functools.partial(build, trial_args, trial_kwargs),
                                        limit))
        if None not in counts and counts[0] != counts[1]:
            return key
    return None


def _candidates(args: list[Any], kwargs: dict[str, Any]) -> list[tuple[int | str, Any]]:
    items: list[tuple[int | str, Any]] = [*enumerate(args), *kwargs.items()]
    sized = [(key, v) for key, v in items if _size(v) > 2]
    return sorted(sized, key=lambda item: -_size(item[1]))


def _size(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)):
        return len(value)
    return 0


def _small_values(value: Any) -> list[Any]:
    if isinstance(value, int):
        return [1, 2]
    return [type(value)(value[:1]), type(value)(value[:2])]
