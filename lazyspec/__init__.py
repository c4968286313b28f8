"""lazyspec: compile YAML model specs into lazy PyTorch networks and infer every shape.

Importing this package is cheap: torch loads only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "infer", "load", "summary"]

if TYPE_CHECKING:
    from lazyspec.api import infer, load, summary


def __getattr__(name: str) -> Any:
    if name in ("load", "infer", "summary", "LoadedSpec"):
        from lazyspec import api

        return getattr(api, name)
    raise AttributeError(f"module 'lazyspec' has no attribute '{name}'")
