"""The op registry: which names a spec may use, and the nn.Module class each one builds.

Names resolve only to the spec's blocks (handled by the compiler), the built-in ops, public
`torch.nn` module classes, and classes from packages the person running lazyspec allowed.
Nothing is imported before the allowlist check passes.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from functools import cache

from torch import nn

from lazyspec.builtin_ops import BUILTIN_OPS

# Containers are the spec language's own job (lists, repeat, blocks), so they are not ops.
EXCLUDED = frozenset({"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList",
                      "ParameterDict", "Container"})


# Packages whose names in a spec mean an attack or a mistake, never a layer: no --allow hint.
NEVER_LAYER_PACKAGES = frozenset({
    "os", "sys", "subprocess", "builtins", "importlib", "shutil", "socket", "pickle", "io",
    "pathlib", "ctypes", "posix", "runpy", "code", "pty", "yaml"})


@dataclass(frozen=True)
class OpDef:
    name: str
    cls: type[nn.Module]
    source: str  # "torch.nn", "builtin" or the allowed package

    @property
    def signature(self) -> inspect.Signature:
        return _signature(self.cls)


class OpLookupError(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


_SIGNATURES: dict[type[nn.Module], inspect.Signature] = {}


def _signature(cls: type[nn.Module]) -> inspect.Signature:
    if cls not in _SIGNATURES:  # inspect.signature is slow; large specs ask thousands of times
        _SIGNATURES[cls] = inspect.signature(cls)
    return _SIGNATURES[cls]


@cache
def torch_nn_ops() -> dict[str, type[nn.Module]]:
    """Every public torch.nn module class, by name."""
    out: dict[str, type[nn.Module]] = {}
    for name in dir(nn):
        obj = getattr(nn, name)
        if (not name.startswith("_") and name not in EXCLUDED and inspect.isclass(obj)
                and issubclass(obj, nn.Module)):
            out[name] = obj
    return out


def known_names() -> list[str]:
    return [*BUILTIN_OPS, *torch_nn_ops()]


@functools.lru_cache(maxsize=1024)
def _suggestion(name: str) -> str | None:
    """did-you-mean for an unknown op, once per name: a spec repeating one unknown op 20,000
    times spent 12 s in difflib."""
    from lazyspec.errors import did_you_mean

    return did_you_mean(name, known_names())


def resolve(name: str, allow: tuple[str, ...]) -> OpDef:
    """Find the class for an op name, or raise OpLookupError with a code and a hint."""
    if name in BUILTIN_OPS:
        return OpDef(name, BUILTIN_OPS[name], "builtin")
    short = name.removeprefix("torch.nn.").removeprefix("nn.")
    if "." not in short:
        if short in torch_nn_ops():
            return OpDef(short, torch_nn_ops()[short], "torch.nn")
        if short in EXCLUDED:
            raise OpLookupError("LS120", f"'{short}' is a container, not an op",
                                "use the spec's own lists, `repeat:` and `blocks:` instead")
        if hasattr(nn, short):
            raise OpLookupError("LS121", f"'{name}' is not a torch.nn module class",
                                "only nn.Module classes can be ops")
        raise OpLookupError("LS120", f"unknown op '{name}'", _suggestion(name[:200])
                            or "ops are torch.nn module classes, built-in ops and the spec's "
                            "blocks")
    return _resolve_dotted(name, allow)


def _allowed_prefix(name: str, allow: tuple[str, ...]) -> str | None:
    for pkg in allow:
        if name == pkg or name.startswith(pkg + "."):
            return pkg
    return None


def _resolve_dotted(name: str, allow: tuple[str, ...]) -> OpDef:
    parts = name.split(".")
    if any(not p.isidentifier() or p.startswith("_") for p in parts):
        raise OpLookupError("LS121", f"'{name}' is not allowed: private or invalid name parts",
                            "dotted ops name public classes only")
    pkg = _allowed_prefix(name, allow)
    if pkg is None:
        if parts[0] in NEVER_LAYER_PACKAGES or not parts[-1][:1].isupper():
            hint = (f"'{name}' is not a layer class: ops are nn.Module classes (torch.nn, the "
                    "built-in ops, the spec's blocks); a spec cannot allow it itself")
        else:
            hint = (f"if you trust its package, run with --allow {parts[0]} (or add it to "
                    "`allow` under [tool.lazyspec]); a spec cannot allow it itself")
        raise OpLookupError("LS121", f"op '{name}' is not allowed", hint)
    # Import the longest real module inside the allowed package, then walk public attributes.
    module = None
    depth = len(parts) - 1
    pkg_depth = len(pkg.split("."))
    while depth >= pkg_depth:
        try:
            module = importlib.import_module(".".join(parts[:depth]))
            break
        except ModuleNotFoundError:
            depth -= 1
        except Exception as e:  # the allowed package failed while importing
            raise OpLookupError("LS121", f"importing '{'.'.join(parts[:depth])}' failed: "
                                f"{type(e).__name__}: {e}") from None
    if module is None:
        raise OpLookupError("LS120", f"cannot import a module for '{name}'",
                            f"is the package '{pkg}' installed?")
    obj: object = module
    for attr in parts[depth:]:
        obj = getattr(obj, attr, None)
        if obj is None:
            raise OpLookupError("LS120", f"'{name}' does not exist")
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise OpLookupError("LS121", f"'{name}' is not an nn.Module class")
    real_module = getattr(obj, "__module__", "") or ""
    if not (real_module == pkg or real_module.startswith(pkg + ".")):
        raise OpLookupError("LS121", f"'{name}' is defined in '{real_module}', outside the allowed "
                            f"package '{pkg}'", f"allow '{real_module.split('.')[0]}' explicitly "
                            "if you trust it")
    return OpDef(name, obj, pkg)
