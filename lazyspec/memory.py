"""Memory policy for runs on real devices: how much this process can still use (on the host, the
smaller of the kernel's `MemAvailable` and the room left under the process's cgroup memory limit,
v2 or v1; on CUDA, torch's free figure), what a run needs, and the refusal of a run that would
not fit (LS306, exit 2) before the kernel kills it.

Inside a container or a CI runner the cgroup limit, not the machine's free memory, decides when
the kernel kills a process (exit 137, no message): a check that read only `/proc/meminfo` would
let a run start that cannot finish. Torch-free, and every path is read below `root`, so a test
can hand it a fake `/proc` and `/sys/fs/cgroup` tree.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lazyspec.errors import Diagnostic, UsageError
from lazyspec.inputs import DTYPES
from lazyspec.result import InferResult

ROOT = Path("/")  # where /proc and /sys are read; tests point it at a fake tree

# cgroup v1 writes a huge number (PAGE_COUNTER_MAX, about 2**63 rounded to pages) for "no limit".
NO_LIMIT = 2**60


@dataclass(frozen=True)
class CgroupRoom:
    """One cgroup level's memory limit and what its processes use now, in bytes."""

    path: Path
    limit: int
    usage: int  # the kernel's usage figure less the page cache it can drop (inactive files)

    @property
    def room(self) -> int:
        return max(0, self.limit - self.usage)


@dataclass(frozen=True)
class MemoryFigures:
    """What the check saw; `available` is the figure it uses."""

    mem_available: int | None  # /proc/meminfo MemAvailable
    cgroups: tuple[CgroupRoom, ...]  # every level with a limit, innermost first

    @property
    def available(self) -> int | None:
        known = [f for f in (self.mem_available, *(c.room for c in self.cgroups))
                 if f is not None]
        return min(known) if known else None


def available_memory(root: str | os.PathLike[str] | None = None) -> int | None:
    """Bytes this process can still allocate on the host, or None when nothing can be told."""
    return memory_figures(root).available


def memory_figures(root: str | os.PathLike[str] | None = None) -> MemoryFigures:
    base = Path(root) if root is not None else ROOT
    available = _mem_available(base)
    if available is None and base == Path("/"):  # no /proc: ask libc
        available = _sysconf_available()
    return MemoryFigures(available, tuple(cgroup_limits(base)))


def _mem_available(root: Path) -> int | None:
    text = _read(root / "proc/meminfo")
    for line in (text or "").splitlines():
        if line.startswith("MemAvailable:"):
            try:
                return int(line.split()[1]) * 1024  # kB
            except (IndexError, ValueError):
                return None
    return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# --- cgroups --------------------------------------------------------------------------------------

# (version, limit file, usage file, the memory.stat key of the page cache the kernel can drop)
_FILES = {2: ("memory.max", "memory.current", "inactive_file"),
          1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}


def cgroup_limits(root: Path) -> list[CgroupRoom]:
    """Every memory limit over this process, innermost first: its own cgroup and each parent up
    to the mount point, for the v2 hierarchy and the v1 memory controller, where present."""
    out: list[CgroupRoom] = []
    for version, directory, top in _cgroup_dirs(root):
        current = directory
        while True:
            level = _level(current, version)
            if level is not None:
                out.append(level)
            if current == top or top not in current.parents:
                break
            current = current.parent
    return out


def _cgroup_dirs(root: Path) -> list[tuple[int, Path, Path]]:
    """(version, this process's cgroup folder, the mount point above it) per hierarchy."""
    memberships = _memberships(root)
    found = []
    for version, mount_root, mount_point in _mounts(root):
        path = memberships.get(version)
        if path is None:
            continue
        top = root / mount_point.lstrip("/")
        rel = os.path.relpath(path, mount_root) if path.startswith(mount_root) else "."
        # Outside the mount's root (another namespace's path): the mount point is our cgroup.
        directory = Path(os.path.normpath(top / rel)) if not rel.startswith("..") else top
        found.append((version, directory if directory.is_dir() else top, top))
    return found


def _memberships(root: Path) -> dict[int, str]:
    """/proc/self/cgroup: `0::/path` is the v2 hierarchy, `N:...memory...:/path` the v1 one."""
    out: dict[int, str] = {}
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if number == "0" and controllers == "":
            out[2] = path
        elif "memory" in controllers.split(","):
            out[1] = path
    return out


def _mounts(root: Path) -> list[tuple[int, str, str]]:
    """(version, cgroup path the mount shows, mount point) of the cgroup2 mount and the v1
    memory mount, from /proc/self/mountinfo; the usual places when it cannot be read."""
    text = _read(root / "proc/self/mountinfo")
    if text is None:
        return [(2, "/", "/sys/fs/cgroup"), (1, "/", "/sys/fs/cgroup/memory")]
    out = []
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        fstype, options = after[0], (after[2] if len(after) > 2 else "")
        mount_root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup2":
            out.append((2, mount_root, mount_point))
        elif fstype == "cgroup" and "memory" in options.split(","):
            out.append((1, mount_root, mount_point))
    return out


def _unescape(text: str) -> str:
    """mountinfo writes a space as \\040 (and tab, newline, backslash the same way)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def _level(directory: Path, version: int) -> CgroupRoom | None:
    limit_file, usage_file, cache_key = _FILES[version]
    limit = _number(_read(directory / limit_file))
    usage = _number(_read(directory / usage_file))
    if limit is None or limit >= NO_LIMIT or usage is None:
        return None  # "max", v1's sentinel, or nothing readable: no limit at this level
    cache = _stat(_read(directory / "memory.stat"), cache_key)
    return CgroupRoom(directory, limit, max(0, usage - cache))


def _stat(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _number(value) or 0
    return 0


def _number(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None  # "max" and anything unreadable


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except (OSError, ValueError):
        return None


# --- the policy ---------------------------------------------------------------------------------


def forward_bytes(result: InferResult) -> int:
    """Memory a forward pass holds at its peak: every output stays alive until the end."""
    inputs = sum(math.prod(i.shape) * DTYPES[i.dtype][1] for i in result.inputs)
    t = result.totals
    return int(t.bytes + t.buffer_bytes + inputs + t.activation_bytes)


def refuse_if_too_large(estimate: int, device: str) -> int | None:
    """The device's free memory; LS306 (exit 2) when the estimate does not fit in it."""
    available = free_memory(device)
    if available is not None and estimate > available:
        raise UsageError([Diagnostic(
            "LS306", f"a dry run on {device} needs about {gib(estimate)} (parameters, "
            f"inputs and activations, from the meta pass) but {gib(available)} is free",
            hint="use --device meta (the default), which allocates nothing, or a smaller input")])
    return available


def free_memory(device: str) -> int | None:
    """Free memory on the device, or None when it cannot be told. On the host: the smaller of
    MemAvailable and the room under this process's cgroup limit (`available_memory`)."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return available_memory()


def peak_bytes(device: str) -> int | None:
    """CUDA: the peak allocated since the last reset; CPU: the process's peak RSS."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"
