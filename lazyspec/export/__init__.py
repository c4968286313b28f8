"""The materialised model in explicit forms (`lazyspec export`), one module per target:

- `yaml_spec`: a spec with every inferred size written out (`--to spec`);
- `pytorch`: standalone PyTorch code (`--to pytorch`);
- `state_dict`: an initialised state dict saved with torch.save (`--to state-dict`).

`plan` turns the compiled, dry-run module into explicit nodes that both text targets write;
`literals` writes argument values; `init_schemes` names the initialisations. Both text forms keep
the spec's parameter names. Importing this package is cheap: the targets load torch when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lazyspec.export.init_schemes import INIT_SCHEMES, InitScheme, init_choices, parse_init

if TYPE_CHECKING:
    from lazyspec.export.plan import ExportError
    from lazyspec.export.pytorch import pytorch_code
    from lazyspec.export.state_dict import init_state_dict, write_state_dict
    from lazyspec.export.yaml_spec import explicit_spec

TARGETS = ("spec", "pytorch", "state-dict")  # what `lazyspec export --to` writes

_LAZY = {"explicit_spec": "yaml_spec", "ExportError": "plan", "pytorch_code": "pytorch",
         "init_state_dict": "state_dict", "write_state_dict": "state_dict"}

__all__ = ["INIT_SCHEMES", "TARGETS", "ExportError", "InitScheme", "explicit_spec",
           "init_choices", "init_state_dict", "parse_init", "pytorch_code", "write_state_dict"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"lazyspec.export.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lazyspec.export' has no attribute '{name}'")
