"""Importers: write a spec from something that exists (`lazyspec import ...`).

Each importer writes spec *text* (YAML) and checks it through the engine
(`engine.run(Request(path, text=...))`) before anything is saved, so what it writes is a spec
lazyspec itself reads back. One module per source: `module.py` (a Python module's nn.Module,
`lazyspec import module`), `hf.py` (a Hugging Face config.json, `lazyspec import hf`, with its
family templates in `templates/`). Torch-free on import: `lazyspec import --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable

from lazyspec.errors import Diagnostic, LazyspecError


class ImportFailure(LazyspecError):
    """What was given cannot be written as a spec (LS160), or the spec written for it does not
    rebuild it (LS161): exit 1. What cannot be read or run at all (LS310) is exit 2."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        super().__init__(diagnostics)


def cannot(code: str, message: str, hint: str | None = None,
           notes: list[str] | None = None) -> ImportFailure:
    """One diagnostic, with no location: importers name the module path in the message."""
    return ImportFailure([Diagnostic(code, message, hint=hint, notes=list(notes or []))])
