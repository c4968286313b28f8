"""How to build a spec: the options every stage of the pipeline reads. Torch-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Work is bounded by what a spec asks for, measured by bench/hostile.py: a spec at these limits
# is compiled and dry-run in well under a minute on a 2-core machine. 100,000 nodes took ~160 s.
MAX_NODES = 20_000  # after repeats, across all blocks
MAX_OP_TENSORS = 10_000  # modules, parameters and buffers one op may create (--max-op-tensors)
MAX_MODEL_TENSORS = 20_000  # modules and tensors all ops' constructors create together


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
    max_op_tensors: int = MAX_OP_TENSORS  # modules and tensors one op's constructor may create
    max_model_tensors: int = MAX_MODEL_TENSORS  # ... and all of them together


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
