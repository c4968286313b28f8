"""Every file lazyspec writes or reads goes through here: what kind of file a path is decides how.

Writing. A regular file (or a new path) is replaced in one step: a temporary file beside it,
fsync, rename, so a crash never leaves half a file. A symlink is followed and its target replaced
the same way (the link stays a link). A character device (`/dev/null`), a FIFO, or a path that
names an open descriptor (`/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`) is written through
directly: renaming a file over `/dev/null` would replace the device itself. A folder is an error
(exit 2), and so is anything else (a socket, a block device).

A run killed between creating its temporary file and the rename leaves that file behind
(`.NAME.PID.XXXX.tmp`, beside NAME); the next write of NAME removes it once its writer is gone.

Reading. `read_capped` reads a regular file only (a FIFO would block, `/dev/zero` never ends) and
never more than a limit, whatever the file says its size is; `regular_size` makes the same checks
for readers that read only part of a file (a checkpoint's header).

Locking. `exclusive` holds an OS lock (flock) on the folder of a file for a read-merge-write, so
that two `lazyspec lock` runs sharing a lock file do not lose each other's entries.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lazyspec.errors import Diagnostic, UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; concurrent runs are not serialised
    fcntl = None  # type: ignore[assignment]

STALE_SECONDS = 3600  # a temporary file whose writer cannot be told alive is left this long
LOCK_TIMEOUT = 60.0  # seconds to wait for another run's OS lock; LAZYSPEC_LOCK_TIMEOUT overrides
LOCK_TIMEOUT_ENV = "LAZYSPEC_LOCK_TIMEOUT"
_LOCK_POLL = 0.05

# Paths that name an open descriptor of this process: written through, never replaced.
_FD_ALIAS = re.compile(r"/dev/std(in|out|err)|/dev/fd/\d+|/proc/(self|thread-self|\d+)/fd/\d+")


@dataclass(frozen=True)
class Target:
    """Where a write goes: `path` is the file to replace (`atomic`) or to write through."""

    path: Path
    atomic: bool
    append: bool = False  # a descriptor alias: append, so `>> log` keeps what it held


def resolved(path: str | os.PathLike[str]) -> Path:
    """`path` made absolute with its symlinks followed, as `Path.resolve()` does, except that a
    symlink loop is not Python 3.11's RuntimeError: the looping part is left as it is, and the
    read or write that follows fails with ELOOP, an OSError every reader reports (exit 2, or
    the spec's own diagnostic for an include). Every path lazyspec resolves goes through here.
    A NUL in the path (no file can have one) is an OSError too, not Python's ValueError."""
    if "\x00" in os.fspath(path):
        raise OSError(errno.EINVAL, "a path cannot hold a NUL character", os.fspath(path))
    return Path(os.path.realpath(path))


def write_target(path: Path, what: str = "file") -> Target:
    """How `path` is written; a folder, socket or block device is refused (UsageError, exit 2)."""
    if _names_descriptor(path):
        return Target(path, atomic=False, append=True)
    real = Path(os.path.realpath(path))  # a symlink (chain) is followed to the file it names
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return Target(real, atomic=True)  # a new file (a dangling link: its target is created)
    except OSError as e:
        raise _cannot(path, what, e) from None
    if stat.S_ISREG(mode):
        return Target(real, atomic=True)
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return Target(real, atomic=False)
    kind = "a folder" if stat.S_ISDIR(mode) else (
        "a socket" if stat.S_ISSOCK(mode) else "a block device" if stat.S_ISBLK(mode)
        else "not a regular file")
    raise UsageError([Diagnostic(
        "LS100", f"cannot write the {what} {path}: it is {kind}",
        hint="give the path of a file (lazyspec writes regular files, character devices such as "
        "/dev/null, FIFOs and /dev/stdout)")])


def _names_descriptor(path: Path) -> bool:
    """Whether `path` (or a link it goes through) is /dev/stdout, /dev/fd/N or /proc/*/fd/N."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on a chain of links
        head, tail = os.path.split(current)
        current = os.path.join(os.path.realpath(head), tail)
        if _FD_ALIAS.fullmatch(current):
            return True
        try:
            link = os.readlink(current) if os.path.islink(current) else None
        except OSError:
            link = None
        if link is None:
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
    return False


def atomic_write(path: Path, text: str, what: str = "file") -> None:
    """Replace `path` with `text` (UTF-8) in one step; a failure leaves the old file as it was.
    A lone surrogate, which UTF-8 cannot hold, is written as its escape (`\\udc80`)."""
    data = text.encode("utf-8", "backslashreplace")
    atomic_write_with(path, what, lambda f: f.write(data))


def atomic_write_with(path: Path, what: str, write: Callable[[BinaryIO], object]) -> None:
    """Write what `write` puts into a binary file to `path`: a regular file is replaced in one
    step, keeping the old one's permissions (a new file gets the umask's), not the temporary
    file's 0600; a device, FIFO or /dev/stdout is written through (see the module docstring)."""
    target = write_target(path, what)
    if not target.atomic:
        _write_through(target, path, what, write)
        return
    real = target.path
    folder = real.parent
    remove_stale_temporaries(folder, real.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=folder)
    except OSError as e:
        raise _cannot(path, what, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):  # a file system without modes keeps its own
            os.chmod(tmp, _mode(real))
        os.replace(tmp, real)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _cannot(path, what, e) from None
        raise


def _write_through(target: Target, shown: Path, what: str,
                   write: Callable[[BinaryIO], object]) -> None:
    """A device, FIFO or descriptor: opened and written, never renamed over (nothing to fsync)."""
    try:
        with open(target.path, "ab" if target.append else "wb") as f:
            write(f)
            f.flush()
    except OSError as e:
        raise _cannot(shown, what, e) from None


def append_text(path: Path, text: str) -> None:
    """Append to a file (the GitHub step summary): appending destroys nothing, so no rename;
    OSError for the caller to report."""
    if Path(path).is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


class FileTooLarge(OSError):
    """A file over the limit its reader sets."""

    def __init__(self, path: Path, limit: int):
        super().__init__(errno.EFBIG, f"larger than {limit:,} bytes (limit)", str(path))
        self.limit = limit


def regular_size(path: Path) -> int:
    """The size of a regular file, for readers that read only part of one (a checkpoint's
    header). OSError (with a plain `strerror`): no such file, a folder, not a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block, /dev/zero would never end
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return st.st_size


def read_capped(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. OSError (with a plain `strerror`):
    no such file, a folder, not a regular file; FileTooLarge over the limit."""
    regular_size(path)
    with open(path, "rb") as f:
        data = f.read(limit + 1)  # never more than the limit, whatever st_size says
    if len(data) > limit:
        raise FileTooLarge(path, limit)
    return data


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Remove the temporary files that killed writes of `name` left in `folder`: those whose
    writing process is gone, and any older than STALE_SECONDS. Returns what was removed."""
    # exactly the names atomic_write_with gives (mkstemp: `.NAME.PID.` + 8 of [a-z0-9_] +
    # `.tmp`): a file of the user's that merely looks like one is never touched
    ours = re.compile(re.escape(f".{name}.") + r"([0-9]+)\.[a-z0-9_]{8}\.tmp")
    try:
        found = [(p, m.group(1)) for p in folder.iterdir() if (m := ours.fullmatch(p.name))]
    except OSError:
        return []
    removed = []
    for p, pid in found:
        alive = _writer_alive(pid)
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
    hint = ("the disk (or device) is full" if e.errno == errno.ENOSPC
            else "check that the folder exists and is writable")
    return UsageError([Diagnostic("LS100", f"cannot write the {what} {path}: {e.strerror or e}",
                                  hint=hint)])


# --- the OS lock for a read-merge-write -----------------------------------------------------------
#
# Held on the folder of the (real) file, not on the file itself and not on a sidecar file:
# - the file cannot carry it: every write renames a new file over it, so a second run would lock
#   the new inode while the first still holds the old one;
# - a sidecar (`.lazyspec.lock.lck`) would stay behind after every run, for `git add .` to pick
#   up, and cannot be removed safely (a run waiting on the removed file would lock a stale one);
# - a folder exists whenever the file can be written, and the kernel drops the lock when its
#   process dies, so a killed run never leaves it held.
# The cost: two lock files in one folder wait for each other (for the milliseconds of a write).


def lock_timeout() -> float:
    """Seconds to wait for the OS lock: LAZYSPEC_LOCK_TIMEOUT, else LOCK_TIMEOUT."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else LOCK_TIMEOUT
    except ValueError:
        raise UsageError([Diagnostic("LS301", f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of "
                                     "seconds")]) from None


@contextlib.contextmanager
def exclusive(path: Path, what: str = "file") -> Iterator[None]:
    """Hold the OS lock of `path`'s folder for a read-merge-write of `path`; wait at most
    lock_timeout() seconds for another holder, then exit 2 naming it where it can be told."""
    if fcntl is None:
        yield
        return
    folder = Path(os.path.realpath(path)).parent
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # the write will report the missing folder
        yield
        return
    try:
        _acquire(fd, folder, path, what)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _acquire(fd: int, folder: Path, path: Path, what: str) -> None:
    deadline = time.monotonic() + lock_timeout()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError:
            return  # a file system without flock (some network ones): write without it
        if time.monotonic() >= deadline:
            raise UsageError([Diagnostic(
                "LS305", f"the {what} {path} is being written by {_holder(fd)}: gave up after "
                f"waiting {lock_timeout():g} s for its lock (on the folder {folder})",
                hint=f"wait for that run to finish, or set {LOCK_TIMEOUT_ENV}=SECONDS to wait "
                "longer")])
        time.sleep(_LOCK_POLL)


def _holder(fd: int) -> str:
    """Who holds the flock on the open folder `fd`: 'process N (name)' from /proc/locks on
    Linux, else 'another process'."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        text = read_capped(Path("/proc/locks"), 4_000_000).decode("ascii", "replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode and \
                fields[4].isdigit() and fields[4] != "0":
            with contextlib.suppress(OSError):
                name = Path(f"/proc/{fields[4]}/comm").read_text(errors="replace").strip()
                return f"process {fields[4]} ({name})"
            return f"process {fields[4]}"
    return "another process"
