"""The benchmark's plain-PyTorch models, and one torchinfo run in a fresh process.

The models are the test suite's hand-written references (tests/reference_models.py and
tests/reference_llama.py): every size given by hand, no lazy modules, the same parameter names as
the bundled specs. Run as a script, this file builds one of them on one device, summarises it with
torchinfo and prints one JSON line, so that bench/run.py can time the whole process (interpreter,
imports, build, summary) and read its peak memory:

    python bench/models.py gpt2 meta
    {"model": "gpt2", "device": "meta", "dtype": "float32", "params": 124439808, ...}

A failure (torchinfo on meta cannot run some models) prints {"error": "..."} and exits 3.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


@dataclass(frozen=True)
class Model:
    key: str
    title: str
    spec: str  # the bundled spec that describes the same model
    input: str  # as for `lazyspec infer --input`
    shape: tuple[int, ...]
    integer_input: bool = False
    # float32 bytes of the parameters: the bench skips a CPU build that would not fit
    params: int = 0


MODELS: dict[str, Model] = {m.key: m for m in [
    Model("mlp", "MLP (D2L 6.4)", "specs/mlp.yaml", "2,20", (2, 20), params=7_946),
    Model("resnet18", "ResNet-18", "specs/resnet18.yaml", "1,3,224,224", (1, 3, 224, 224),
          params=11_689_512),
    Model("gpt2", "GPT-2 small", "specs/gpt2.yaml", "1,64:int64", (1, 64), True,
          params=124_439_808),
    Model("llama7b", "LLaMA-2 7B", "specs/llama2-7b.yaml", "1,64:int64", (1, 64), True,
          params=6_738_415_616),
]}


def factory(key: str) -> Callable[[], nn.Module]:
    import reference_llama
    import reference_models

    factories: dict[str, Callable[[], nn.Module]] = {
        "mlp": reference_models.mlp,
        "resnet18": reference_models.resnet18,
        "gpt2": reference_models.GPT2,
        "llama7b": lambda: reference_llama.Llama(**reference_llama.LLAMA2_7B),
    }
    return factories[key]


def summarise(key: str, device: str, dtype: str = "float32") -> dict[str, object]:
    """Build MODELS[key] on `device` with parameters in `dtype` and run torchinfo.summary."""
    t0 = time.perf_counter()
    import torch
    import torchinfo

    spec = MODELS[key]
    t1 = time.perf_counter()
    torch.set_default_dtype(getattr(torch, dtype))  # parameters are created in this dtype
    with torch.device(device):
        model = factory(key)()
    if spec.integer_input:
        x = torch.zeros(spec.shape, dtype=torch.int64, device=device)
    else:
        x = torch.randn(spec.shape, device=device)
    t2 = time.perf_counter()
    stats = torchinfo.summary(model, input_data=[x], device=device, verbose=0,
                              col_names=("output_size", "num_params"))
    t3 = time.perf_counter()
    return {"model": key, "device": device, "dtype": dtype,
            "params": int(stats.total_params), "import_s": t1 - t0, "build_s": t2 - t1,
            "summary_s": t3 - t2, "torchinfo": getattr(torchinfo, "__version__", "?")}


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] not in MODELS or argv[1] not in ("cpu", "meta"):
        print(f"usage: python bench/models.py {{{','.join(MODELS)}}} {{cpu,meta}} [DTYPE]",
              file=sys.stderr)
        return 2
    try:
        out = summarise(*argv)
    except Exception as exc:  # reported by bench/run.py as "fails: reason"
        message = " ".join(str(exc).split())
        print(json.dumps({"error": f"{type(exc).__name__}: {message}"}))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
