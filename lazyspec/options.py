"""How to build a spec: the options every stage of the pipeline reads. Torch-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_NODES = 100_000  # after repeats, across all blocks


def is_plain_value(value: Any) -> bool:
    """A param override (`--set`, `set =` in [tool.lazyspec]): a number (an integer held to the
    spec's 256 bits), a string, a boolean, null, or a list of them."""
    if isinstance(value, list):
        return all(is_plain_value(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() <= 256
    return value is None or isinstance(value, (float, str, bool))


@dataclass(frozen=True)
class BuildOptions:
    device: str = "meta"
    dtype: str = "float32"  # parameter dtype
    allow: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set
    scale: str | None = None
    max_nodes: int = MAX_NODES


def check_device(device: str) -> str:
    """meta, cpu, cuda or cuda:N, and available here; UsageError (exit 2) otherwise. torch is
    imported only for a CUDA device."""
    import re

    from lazyspec.errors import usage_error

    device = device.strip().lower()
    if not re.fullmatch(r"meta|cpu|cuda(:\d+)?", device):
        raise usage_error(f"unknown device '{device}'", "use meta, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise usage_error(f"device '{device}' is not available: torch sees no CUDA device",
                              "use the meta device (the default) or cpu", code="LS302")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise usage_error(f"device '{device}' is not available: "
                              f"{torch.cuda.device_count()} CUDA device(s)", code="LS302")
    return device
