"""The materialised model in explicit forms (`lazyspec export`), one module per target:

- `explicit_spec`: a spec with every inferred size written out (`--to spec`);
- `pytorch`: standalone PyTorch code (`--to pytorch`);
- `state_dict`: an initialised state dict saved with torch.save (`--to state-dict`).

`plan` turns the compiled, dry-run module into explicit nodes that both text targets write;
`literals` writes argument values. Both text forms keep the spec's parameter names.
"""

from __future__ import annotations

from lazyspec.export.explicit_spec import explicit_spec
from lazyspec.export.plan import ExportError
from lazyspec.export.pytorch import pytorch_code
from lazyspec.export.state_dict import (
    INIT_SCHEMES,
    InitScheme,
    init_choices,
    init_state_dict,
    parse_init,
    write_state_dict,
)

TARGETS = ("spec", "pytorch", "state-dict")  # what `lazyspec export --to` writes

__all__ = ["INIT_SCHEMES", "TARGETS", "ExportError", "InitScheme", "explicit_spec",
           "init_choices", "init_state_dict", "parse_init", "pytorch_code", "write_state_dict"]
