"""Writing files so that a crash never leaves half a file: temporary file, fsync, rename.

A run killed between creating its temporary file and the rename leaves that file behind
(`.NAME.PID.XXXX.tmp`, beside NAME); the next write of NAME removes it once its writer is gone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from lazyspec.errors import Diagnostic, UsageError

STALE_SECONDS = 3600  # a temporary file whose writer cannot be told alive is left this long


def atomic_write(path: Path, text: str, what: str = "file") -> None:
    """Replace `path` with `text` (UTF-8) in one step; a failure leaves the old file as it was.
    A lone surrogate, which UTF-8 cannot hold, is written as its escape (`\\udc80`)."""
    data = text.encode("utf-8", "backslashreplace")
    atomic_write_with(path, what, lambda f: f.write(data))


def atomic_write_with(path: Path, what: str, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` with what `write` puts into a binary file, in one step. The new file keeps
    the old one's permissions (a new file gets the umask's), not the temporary file's 0600."""
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(folder, path.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=folder)
    except OSError as e:
        raise _cannot(path, what, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):  # a file system without modes keeps its own
            os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _cannot(path, what, e) from None
        raise


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Remove the temporary files that killed writes of `name` left in `folder`: those whose
    writing process is gone, and any older than STALE_SECONDS. Returns what was removed."""
    prefix = f".{name}."
    try:
        found = [p for p in folder.iterdir() if p.name.startswith(prefix)
                 and p.name.endswith(".tmp")]
    except OSError:
        return []
    removed = []
    for p in found:
        alive = _writer_alive(p.name[len(prefix):].split(".", 1)[0])
        try:
            old = time.time() - p.stat().st_mtime > STALE_SECONDS
        except OSError:
            continue
        if alive is False or old:
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def _writer_alive(pid_text: str) -> bool | None:
    """Whether the process that wrote a temporary file still runs; None where it cannot be told
    (not POSIX, or a name without a process id)."""
    if os.name != "posix" or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except (OSError, OverflowError):
        return None
    return True


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _cannot(path: Path, what: str, e: OSError) -> UsageError:
    return UsageError([Diagnostic("LS100", f"cannot write the {what} {path}: {e.strerror or e}",
                                  hint="check that the folder exists and is writable")])
