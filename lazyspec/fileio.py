"""Writing files so that a crash never leaves half a file: temporary file, fsync, rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lazyspec.errors import Diagnostic, UsageError


def atomic_write(path: Path, text: str, what: str = "file") -> None:
    """Replace `path` with `text` in one step; a failure leaves the old file as it was."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise _cannot(path, what, e) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _cannot(path, what, e) from None
        raise


def _cannot(path: Path, what: str, e: OSError) -> UsageError:
    return UsageError([Diagnostic("LS100", f"cannot write the {what} {path}: {e.strerror or e}",
                                  hint="check that the folder exists and is writable")])
