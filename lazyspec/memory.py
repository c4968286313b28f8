"""Memory policy for runs on real devices: how much is free, what a run needs, and the refusal
of a run that would not fit (LS306, exit 2) before it is killed. torch only for CUDA figures."""

from __future__ import annotations

import math
import os
import sys

from lazyspec.errors import Diagnostic, UsageError
from lazyspec.inputs import DTYPES
from lazyspec.result import InferResult


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
    """Free memory on the device, or None when it cannot be told."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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
