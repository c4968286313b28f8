"""FLOPs, memory estimates, real-device runs and the CPU fallback for ops without meta kernels."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, SPECS

import lazyspec

FIXTURES = ROOT / "tests" / "fixtures"


def test_resnet18_multiply_accumulates():
    result = lazyspec.infer(SPECS / "resnet18.yaml", "1,3,224,224")
    # torchvision's ResNet-18 is 1.814 G multiply-accumulates at 224x224 (fvcore, ptflops).
    assert result.totals.macs == pytest.approx(1.814e9, rel=0.01)
    assert result.totals.flops == 2 * result.totals.macs
    assert result.totals.unknown_ops == []
    conv1 = next(n for n in result.nodes if n.path == "conv1")
    # 7x7x3 kernel, 64 channels, 112x112 outputs: MACs = 147 * 64 * 112 * 112
    assert conv1.flops == 2 * 147 * 64 * 112 * 112


def test_linear_flops_are_exact(write_spec):
    result = lazyspec.infer(write_spec("layers:\n  - LazyLinear(256)\n  - ReLU\n"), "2,20")
    assert result.nodes[0].flops == 2 * 2 * 20 * 256
    assert result.nodes[1].flops == 0  # element-wise: 0 by convention, not unknown
    assert result.totals.flops == 2 * 2 * 20 * 256


def test_an_op_the_counter_cannot_count_is_unknown(write_spec, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    spec = write_spec("layers:\n  - LazyLinear(4)\n  - allowpkg.layers.CumSum\n")
    result = lazyspec.load(spec).infer("2,3", allow=["allowpkg"])
    cumsum = result.nodes[1]
    assert cumsum.flops is None and cumsum.unknown_ops == ["aten::cumsum"]
    assert result.nodes[0].flops == 2 * 2 * 3 * 4
    assert result.totals.unknown_ops == ["aten::cumsum"]


def test_unknown_flops_show_as_unknown_in_reports(cli, write_spec, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    spec = write_spec("layers:\n  - allowpkg.layers.CumSum\n")
    r = cli("infer", spec, "--input", "2,3", "--allow", "allowpkg")
    assert r.code == 0
    row = next(line for line in r.stdout.splitlines() if "CumSum" in line and "[2, 3]" in line)
    assert row.rstrip().endswith("?")
    assert "not counted: aten::cumsum" in r.stdout
    doc = json.loads(cli("infer", spec, "--input", "2,3", "--allow", "allowpkg",
                         "-f", "json").stdout)
    assert doc["nodes"][0]["flops"] is None
    assert doc["totals"]["unknown_ops"] == ["aten::cumsum"]


def test_training_memory_estimate(write_spec):
    result = lazyspec.infer(write_spec("layers:\n  - LazyLinear(10)\n"), "4,5")
    t = result.totals
    assert t.activation_bytes == 4 * 10 * 4
    # params 60 floats; grads and Adam's two moments: 3 more copies; plus the output activations
    assert t.training_bytes == 60 * 4 * 4 + 4 * 10 * 4


def test_op_without_meta_kernel_falls_back_to_cpu(write_spec, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    spec = write_spec("layers:\n  - LazyLinear(8)\n  - allowpkg.layers.CpuOnly(4)\n"
                      "  - LazyLinear(3)\n")
    result = lazyspec.load(spec).infer("2,5", allow=["allowpkg"])
    shapes = {p.path: p.shape for p in result.params}
    assert shapes["1.proj.weight"] == (4, 8) and shapes["2.weight"] == (3, 4)
    assert result.outputs == [(2, 3)]
    assert len(result.notes) == 1 and "node '1'" in result.notes[0] and "CPU" in result.notes[0]


def test_cpu_run_that_would_not_fit_is_refused(cli):
    r = cli("infer", SPECS / "mlp.yaml", "--device", "cpu", "--input", "100000,100000,100000")
    assert r.code == 2
    assert "error[LS306]" in r.stderr and "GiB" in r.stderr
    assert "Traceback" not in r.stderr


def test_cpu_run_reports_time_and_peak(cli):
    r = cli("infer", SPECS / "mlp.yaml", "--device", "cpu", "--input", "2,20", "-f", "json")
    assert r.code == 0
    run = json.loads(r.stdout)["run"]
    assert run["forward_seconds"] > 0 and run["peak_bytes"] > 0
    assert run["estimate_bytes"] == 7946 * 4 + 2 * 20 * 4 + (2 * 256 * 2 + 2 * 10) * 4
    meta = json.loads(cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "-f", "json").stdout)
    assert meta["run"] is None


@pytest.mark.cuda
def test_cuda_dry_run_matches_meta():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for spec, shape in (("resnet18.yaml", "2,3,224,224"), ("gpt2.yaml", "2,64:int64")):
        meta = lazyspec.infer(SPECS / spec, shape)
        cuda = lazyspec.infer(SPECS / spec, shape, device="cuda")
        assert [(p.path, p.shape) for p in cuda.params] == [(p.path, p.shape) for p in meta.params]
        assert cuda.run is not None and cuda.run.peak_bytes


def test_cpu_fallback_that_would_not_fit_is_refused(cli, write_spec, monkeypatch):
    from lazyspec import memory

    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setattr(memory, "free_memory", lambda device: 1000)
    spec = write_spec("layers:\n  - allowpkg.layers.CpuOnly(4)\n")
    r = cli("infer", spec, "--input", "2,500", "--allow", "allowpkg")
    assert r.code == 2 and "error[LS306]" in r.stderr and "no meta kernel" in r.stderr
