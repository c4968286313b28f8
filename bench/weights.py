"""How fast `lazyspec weights` checks LLaMA-2 70B's sharded checkpoint from its headers (issue 13).
Prints figures.

    python bench/weights.py            # about 2 minutes on 2 cores; --quick: one run each

Into a temporary folder it writes LLaMA-2 70B as Hugging Face shards it, bfloat16, 138 GB in
each of two forms, as sparse files (every header written, the tensor data never: no disk space):
15 `.safetensors` shards with `model.safetensors.index.json`, and 15 PyTorch `.bin` shards
(torch.save under `skip_data`) with `pytorch_model.bin.index.json`. Shapes come from the test
suite's hand-written LLaMA config (tests/reference_llama.py), names with the `model.` prefix.

1. Whole commands, each a fresh process (median of 3): wall time and peak RSS of
   `lazyspec weights specs/llama2-70b.yaml INDEX --strip-prefix model.` for both forms, next to
   `lazyspec infer specs/llama2-70b.yaml --input 2,64:int64` (the dry run alone: what the check
   costs beyond its headers). Targets (issue 13): seconds, and peak RSS under 500 MB.
2. Reading each checkpoint in process (lazyspec.checkpoint.read_checkpoint; best of 3, torch
   already imported): time, and the bytes read (Linux `/proc/self/io` rchar): headers only.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's lazyspec
sys.path.insert(0, str(ROOT / "tests"))  # the checkpoint writers and the reference config

from checkpoint_files import llama_hf_shapes, write_sharded  # noqa: E402
from reference_llama import LLAMA2_70B, LLAMA2_70B_PARAMS  # noqa: E402

RSS_TARGET = 500 * 2**20


def write_pytorch_shards(folder: Path, shapes: dict[str, tuple[str, tuple[int, ...]]],
                         shards: int) -> Path:
    """torch.save shards whose storages are never written (skip_data): sparse, like the
    safetensors ones, and their index."""
    import json

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    folder.mkdir(parents=True, exist_ok=True)
    names = list(shapes)
    per = math.ceil(len(names) / shards)
    weight_map = {}
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        shard = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        with FakeTensorMode():
            tensors = {n: torch.empty(shapes[n][1], dtype=torch.bfloat16) for n in part}
        with torch.serialization.skip_data(materialize_fake_tensors=True):
            torch.save(tensors, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    index = folder / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}), encoding="utf-8")
    return index


def rchar() -> int | None:
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("rchar")))


def reading(indexes: dict[str, Path]) -> None:
    from lazyspec.checkpoint import read_checkpoint

    print("2. reading the checkpoint (in process, best of 3; torch imported before)")
    import torch  # noqa: F401 - its import is not the reader's cost

    for name, index in indexes.items():
        times, read = [], None
        for _ in range(3):
            before, start = rchar(), time.perf_counter()
            checkpoint = read_checkpoint(index)
            times.append(time.perf_counter() - start)
            after = rchar()
            read = None if before is None or after is None else after - before
        values = sum(t.numel for t in checkpoint.tensors.values())
        on_disk = sum(os.stat(f).st_blocks * 512 for f in checkpoint.files)
        size = sum(os.stat(f).st_size for f in checkpoint.files)
        read_text = "?" if read is None else f"{read / 1e3:,.0f} KB"
        print(f"  {name}: {min(times):.2f} s, read {read_text} of {size / 1e9:,.1f} GB "
              f"({on_disk / 1e6:.1f} MB on disk), {len(checkpoint.tensors)} tensors, "
              f"{values:,} values" + (" (the published count)" if values == LLAMA2_70B_PARAMS
                                      else " (NOT the published count)"))


def command(args: list[str]) -> tuple[float, int, int]:
    """Wall time, exit code and peak RSS (bytes) of `python -m lazyspec ARGS`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "lazyspec", *args], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024


def commands(indexes: dict[str, Path], runs: int) -> bool:
    spec = "specs/llama2-70b.yaml"
    cases = {f"weights, {name}": ["weights", spec, str(index), "--strip-prefix", "model.",
                                  "-f", "github"] for name, index in indexes.items()}
    cases["infer --input 2,64:int64 (the dry run alone)"] = ["infer", spec, "--input",
                                                             "2,64:int64", "-f", "github"]
    print(f"1. whole commands on {spec}, a fresh process each (median of {runs})")
    ok = True
    for name, args in cases.items():
        results = [command(args) for _ in range(runs)]
        seconds = statistics.median(r[0] for r in results)
        rss = max(r[2] for r in results)
        codes = sorted({r[1] for r in results})
        target = ""
        if name.startswith("weights"):
            holds = codes == [0] and rss < RSS_TARGET
            ok = ok and holds
            target = f"  [{'pass' if holds else 'FAIL'}: exit 0, peak RSS < 500 MiB]"
        print(f"  {name}: {seconds:.1f} s, exit {codes}, peak RSS {rss / 2**20:.0f} MiB{target}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each command")
    parser.add_argument("--write-pytorch", metavar="FOLDER", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.write_pytorch:
        write_pytorch_shards(Path(options.write_pytorch), llama_hf_shapes(LLAMA2_70B), 15)
        return 0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    shapes = llama_hf_shapes(LLAMA2_70B)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        # torch.save runs in a child: this process imports no torch before it measures others
        subprocess.run([sys.executable, __file__, "--write-pytorch", str(Path(folder) / "pt")],
                       check=True)
        indexes = {
            "15 safetensors shards": write_sharded(Path(folder) / "st", shapes, shards=15),
            "15 PyTorch .bin shards": Path(folder) / "pt" / "pytorch_model.bin.index.json",
        }
        print(f"wrote both checkpoints (sparse) in {time.perf_counter() - start:.1f} s")
        ok = commands(indexes, 1 if options.quick else 3)
        reading(indexes)  # after the commands: this process imports torch here
    print(f"load {os.getloadavg()[0]:.1f}; {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
