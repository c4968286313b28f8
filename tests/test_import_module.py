"""`lazyspec import module`: the plain-PyTorch reference models round-trip through a written spec
(identical state-dict names and shapes; the same outputs after load_state_dict on the CPU), the
spec keeps the module tree (blocks, repeat, share, tie, symbolic input dims), layers are written
with constructor arguments that rebuild them, and functions become the spec's ops.

The bad uses (unknown module, failing factory, bad --args, data-dependent control flow, a function
with no spec op, ...) are the catalogue in tests/test_hostile_import.py.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import reference_llama as L
import reference_models as R
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import lazyspec
from lazyspec.importers import ImportFailure
from lazyspec.importers.layers import layer_call
from lazyspec.importers.module import Imported, import_module
from lazyspec.inputs import parse_input

TINY_GPT2 = {"vocab_size": 512, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4}


def imported(model: nn.Module, *inputs: str) -> Imported:
    return import_module(model, [parse_input(i) for i in inputs], "imported.yaml")


def spec_module(text: str, tmp_path: Path, *inputs: str, device: str = "cpu") -> nn.Module:
    path = tmp_path / "imported.yaml"
    path.write_text(text, encoding="utf-8")
    return lazyspec.load(path).materialize(*inputs, device=device)


def state(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def same_outputs(model: nn.Module, spec: nn.Module, *xs: torch.Tensor) -> None:
    spec.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    spec.eval()
    with torch.no_grad():
        torch.testing.assert_close(spec(*xs), model(*xs), rtol=1e-4, atol=1e-5)


Reference = tuple[Callable[[], nn.Module], tuple[str, ...], Callable[[], list[torch.Tensor]]]
REFERENCES: dict[str, Reference] = {
    "mlp": (R.mlp, ("2,20",), lambda: [torch.randn(2, 20)]),
    "lenet": (R.lenet, ("2,1,28,28",), lambda: [torch.randn(2, 1, 28, 28)]),
    "resnet18": (R.resnet18, ("2,3,64,64",), lambda: [torch.randn(2, 3, 64, 64)]),
    "unet": (R.UNet, ("2,3,32,32",), lambda: [torch.randn(2, 3, 32, 32)]),
    "two_input": (R.TwoInput, ("4,32", "4,32"), lambda: [torch.randn(4, 32), torch.randn(4, 32)]),
    "gpt2": (lambda: R.GPT2(**TINY_GPT2), ("2,16:int64",),
             lambda: [torch.randint(0, 512, (2, 16))]),
    "llama": (lambda: L.Llama(**L.LLAMA2_7B_TINY), ("2,16:int64",),
              lambda: [torch.randint(0, 256, (2, 16))]),
}


@pytest.mark.parametrize("name", list(REFERENCES))
def test_reference_models_round_trip(name: str, tmp_path: Path) -> None:
    """The written spec, read back by lazyspec, has the module's state-dict names and shapes and
    computes the same outputs after load_state_dict, also at another batch size and length."""
    torch.manual_seed(0)
    factory, inputs, data = REFERENCES[name]
    model = factory()
    result = imported(model, *inputs)
    assert "the same outputs on cpu" in result.checked
    assert result.params == sum(p.numel() for p in model.parameters())
    spec = spec_module(result.text, tmp_path, *inputs)
    assert state(spec) == state(model)
    same_outputs(model, spec, *data())


def test_gpt2_keeps_its_tree_its_tie_and_free_dimensions(tmp_path: Path) -> None:
    """GPT-2's 12 identical blocks are one block repeated under `h`, the head is tied, the
    attention's sizes come from the input (B, T), and the causal mask and positions are the
    spec's ops: the spec runs at a batch and length it was not imported at."""
    model = R.GPT2(**TINY_GPT2)
    doc = yaml.safe_load(imported(model, "2,16:int64").text)
    assert doc["inputs"] == {"idx": {"shape": ["B", "T"], "dtype": "int64"}}
    assert {"h": "GPT2Block", "repeat": 2} in doc["layers"]
    assert {"arange": "Positions"} in doc["layers"]
    assert doc["tie"] == [["lm_head.weight", "wte.weight"]]
    attention = doc["blocks"]["CausalSelfAttention"]["layers"]
    assert {"view": "Unflatten(2, [4, 16])", "in": "split.0"} in attention
    assert {"masked_fill_causal": "CausalMask", "in": "x"} in attention
    text = imported(model, "2,16:int64").text
    spec = spec_module(text, tmp_path, "3,9:int64")
    same_outputs(model, spec, torch.randint(0, 512, (3, 9)))


def test_resnet_blocks_are_shared_by_identical_bodies() -> None:
    """Identical BasicBlocks are one block called again; layer1's two identical blocks are a
    named repeat; the relu called twice is a share."""
    doc = yaml.safe_load(imported(R.resnet18(), "2,3,64,64").text)
    assert {"layer1": "BasicBlock", "repeat": 2} in doc["layers"]
    assert doc["inputs"] == {"x": ["B", 3, "H", "W"]}
    body = doc["blocks"]["BasicBlock"]["layers"]
    assert {"relu_again": None, "share": "relu"} in body
    assert sum(1 for b in doc["blocks"] if b.startswith("BasicBlock")) == 7  # 8 blocks, 7 bodies


def test_two_input_shared_encoder_is_a_share(tmp_path: Path) -> None:
    doc = yaml.safe_load(imported(R.TwoInput(), "4,32", "4,32").text)
    assert {"enc_a_again": None, "share": "enc_a", "in": "b"} in doc["layers"]
    assert doc["inputs"] == {"a": ["B", 32], "b": ["B", 32]}


def test_hand_written_rmsnorm_becomes_nn_rmsnorm() -> None:
    """LLaMA's RMSNorm class computes nn.RMSNorm (checked on random data): written as it."""
    doc = yaml.safe_load(imported(L.Llama(**L.LLAMA2_7B_TINY), "2,16:int64").text)
    assert {"norm": "RMSNorm(64, eps=1e-05)"} in doc["layers"]
    assert {"layers": "LlamaDecoderLayer", "repeat": 2} in doc["layers"]
    assert "RMSNorm" not in doc["blocks"]


def test_the_model_is_not_modified() -> None:
    model = R.GPT2(**TINY_GPT2)
    model.train()
    model.h[0].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    imported(model, "2,16:int64")
    assert model.training and not model.h[0].training and model.h[1].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert model.wte.weight.device.type == "cpu"


def test_a_module_on_meta_is_checked_by_names_and_shapes() -> None:
    """A model built on meta (a large one) has no values: outputs cannot be compared, and the
    check says so."""
    result = imported(R.on_meta(R.GPT2), "2,64:int64")
    assert result.params == 124_439_808
    assert "outputs not compared: the module is on meta" in result.checked


# --- layers: constructor arguments recovered and verified ----------------------------------------

LAYERS = [
    nn.Linear(3, 4, bias=False), nn.Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), groups=1),
    nn.Conv1d(4, 8, 3, dilation=2, padding="same"), nn.ConvTranspose2d(8, 4, 2, stride=2),
    nn.BatchNorm2d(8, eps=1e-3, momentum=None, affine=False), nn.LayerNorm(16, bias=False),
    nn.GroupNorm(4, 16), nn.Embedding(10, 4, padding_idx=0), nn.RMSNorm(8, eps=1e-6),
    nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d((2, 3)),
    nn.Dropout(0.3), nn.GELU("tanh"), nn.Softmax(-1), nn.Flatten(2), nn.Unflatten(1, (2, 4)),
    nn.MultiheadAttention(16, 4, bias=False, batch_first=True),
    nn.TransformerEncoderLayer(16, 2, 32, activation="gelu", batch_first=True),
    nn.LSTM(4, 8, 2, batch_first=True, bidirectional=True), nn.GRU(4, 8),
    nn.Upsample(scale_factor=2.0, mode="bilinear"), nn.PReLU(3), nn.Identity(),
]


@pytest.mark.parametrize("layer", LAYERS, ids=[type(m).__name__ for m in LAYERS])
def test_layer_arguments_rebuild_the_layer(layer: nn.Module) -> None:
    call = layer_call(layer, "layer")
    rebuilt = call.build("meta")
    assert type(rebuilt) is type(layer)
    assert state(rebuilt) == state(layer)
    assert rebuilt.extra_repr() == layer.extra_repr()
    assert "device" not in call.text() and "dtype" not in call.text()


def test_a_layer_whose_arguments_do_not_round_trip_is_an_error() -> None:
    """An attribute changed after construction no longer describes the layer: the rebuilt
    layer differs, and the import says so at the module's path instead of writing it."""
    layer = nn.Linear(4, 8)
    layer.in_features = 5  # the weight is still [8, 4]
    with pytest.raises(ImportFailure) as info:
        layer_call(layer, "encoder.fc")
    message = info.value.diagnostics[0].message
    assert info.value.diagnostics[0].code == "LS160"
    assert "module 'encoder.fc' (Linear): rebuilt as Linear(5, 8)" in message
    assert "holds other shapes, weight [8, 5] where the module's is [8, 4]" in message


# --- functions -----------------------------------------------------------------------------------


class Functions(nn.Module):
    """Functions that map to built-in ops and torch.nn modules, and free tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 24)
        self.scale = nn.Parameter(torch.ones(8))
        self.register_buffer("zero", torch.zeros(8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.proj(x).chunk(3, dim=-1)
        q = q.view(b, t, 2, d // 2).transpose(1, 2)
        k = k.reshape(b, t, 2, -1).permute(0, 2, 1, 3)
        v = v.view(b, t, 2, 4).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).flatten(2)
        y = F.gelu(y, approximate="tanh") * self.scale - x / 2
        z = torch.cat([y, torch.sigmoid(x)], dim=-1).mean(1)
        return F.softmax(z, dim=-1), y[:, 0] + self.zero


def test_functions_become_ops_and_free_tensors_nodes(tmp_path: Path) -> None:
    model = Functions()
    result = imported(model, "2,6,8")
    doc = yaml.safe_load(result.text)
    ops = {next(iter(n.values())) if isinstance(n, dict) and "op" not in n else
           n.get("op") if isinstance(n, dict) else n for n in doc["layers"]}
    for op in ("Chunk(3, -1)", "Unflatten(2, [2, 4])", "Transpose(1, 2)", "Permute(0, 2, 1, 3)",
               "ScaledDotProductAttention(is_causal=true)", "GELU(approximate='tanh')", "Mul",
               "Scale(0.5)", "Scale(-1.0)", "Add", "Sigmoid", "Concat(-1)", "Mean(1)",
               "Softmax(dim=-1)", "Select(1, 0)", "Parameter(8, init='ones')",
               "Buffer('zeros', [8])"):
        assert op in ops, op
    spec = spec_module(result.text, tmp_path, "3,5,8")
    same_outputs(model, spec, torch.randn(3, 5, 8))


class Encoder(nn.Module):
    """torchvision's ViT encoder block, with nn.MultiheadAttention (need_weights=False)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(4 * d, d), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class ViT(nn.Module):
    """A small ViT as torchvision writes it: class token expanded to the batch, learned
    positions, the class token's output read as x[:, 0]."""

    def __init__(self, d: int = 32, heads: int = 4, layers: int = 2, patch: int = 8,
                 image: int = 32, classes: int = 10):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, d, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        n = (image // patch) ** 2 + 1
        self.pos_embedding = nn.Parameter(torch.empty(1, n, d).normal_(std=0.02))
        self.layers = nn.Sequential(*[Encoder(d, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.ln(self.layers(x + self.pos_embedding))
        return self.head(x[:, 0])


class FunctionalCNN(nn.Module):
    """Layers called as functions: F.max_pool2d, F.interpolate, torch.stack, F.dropout, ..."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        y = F.interpolate(x, scale_factor=2.0, mode="nearest")
        y = F.avg_pool2d(self.conv2(y), kernel_size=2, stride=2)
        z = torch.stack([x, y], dim=1).mean(1)
        z = F.adaptive_avg_pool2d(F.leaky_relu(z, 0.2), 1).flatten(1)
        return F.log_softmax(F.dropout(self.fc(z), 0.1, self.training), dim=-1)


def test_vit_class_token_and_attention_layer(tmp_path: Path) -> None:
    model = ViT()
    result = imported(model, "2,3,32,32")
    doc = yaml.safe_load(result.text)
    assert {"expand": "ExpandAs(0)", "in": ["class_token", "flatten"]} in doc["layers"]
    assert {"pos_embedding": "Parameter(1, 17, 32, init='normal:0.02')"} in doc["layers"]
    assert {"layers": "Encoder", "repeat": 2} in doc["layers"]
    assert {"self_attention": "MultiheadAttention(32, 4, batch_first=true)",
            "in": ["ln_1", "ln_1", "ln_1"]} in doc["blocks"]["Encoder"]["layers"]
    spec = spec_module(result.text, tmp_path, "3,3,32,32")
    same_outputs(model, spec, torch.randn(3, 3, 32, 32))


def test_layers_called_as_functions(tmp_path: Path) -> None:
    model = FunctionalCNN()
    result = imported(model, "2,3,16,16")
    layers = [next(iter(n.values())) for n in yaml.safe_load(result.text)["layers"]]
    assert layers == ["Conv2d(3, 8, 3, padding=1)", "ReLU", "MaxPool2d(kernel_size=2)",
                      "Upsample(scale_factor=2.0)", "Conv2d(8, 8, 3, padding=1)",
                      "AvgPool2d(kernel_size=2, stride=2)", "Unsqueeze(1)", "Unsqueeze(1)",
                      "Concat(1)", "Mean(1)", "LeakyReLU(negative_slope=0.2)",
                      "AdaptiveAvgPool2d(output_size=1)", "Flatten", "Linear(8, 4)",
                      "Dropout(p=0.1)", "LogSoftmax(dim=-1)"]
    spec = spec_module(result.text, tmp_path, "2,3,16,16")
    same_outputs(model, spec, torch.randn(2, 3, 16, 16))


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder holding the user's own package, as the working folder; sys.path and
    sys.modules restored afterwards."""
    (tmp_path / "proj_models.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, width=16):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(8, width)\n"
        "        self.out = nn.Linear(width, 2)\n\n"
        "    def forward(self, x):\n"
        "        return self.out(torch.relu(self.fc(x)))\n\n\n"
        "def make(width=16, depth=1):\n"
        "    return Net(width)\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    path, modules = list(sys.path), set(sys.modules)
    yield tmp_path
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith("proj_"):  # the user's module only: torch's own stay loaded
            del sys.modules[name]


def test_command_writes_the_spec_atomically(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    out = project / "net.yaml"
    result = cli("import", "module", "proj_models:make", "--args", '{"width": 4}', "--input",
                 "2,8", "--output", str(out))
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    assert "wrote" in result.stderr and "46 parameters" in result.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Written by `lazyspec import module proj_models:make --args "
                           "'{\"width\": 4}'`")
    assert "  - fc: Linear(8, 4)" in text
    again = cli("infer", str(out), "--input", "5,8")
    assert again.code == 0 and "output: [5, 2]" in again.stdout


def test_command_prints_to_stdout_and_takes_positional_args(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """stdout holds the spec alone: what the user's code prints goes to stderr."""
    source = project / "proj_models.py"
    source.write_text("print('loading the models')\n" + source.read_text(encoding="utf-8")
                      .replace("        return self.out(", "        print('forward')\n"
                               "        return self.out("), encoding="utf-8")
    result = cli("import", "module", "proj_models:Net", "--args", "[6]", "--input", "2,8")
    assert result.code == 0, result.stderr
    assert yaml.safe_load(result.stdout)["layers"][0] == {"fc": "Linear(8, 6)"}
    assert "loading the models" in result.stderr and "forward" in result.stderr
    assert "spec written to stdout" in result.stderr


def test_a_spec_that_computes_something_else_is_not_written(project: Path, cli,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    """The last check compares outputs: were torch.relu written as Sigmoid, the names and
    shapes would agree and the outputs not, and nothing is written (LS161, exit 1)."""
    from lazyspec.importers import functions

    _, signature, taken = functions._LAYERS[torch.relu]
    monkeypatch.setitem(functions._LAYERS, torch.relu, ("Sigmoid", signature, taken))
    out = project / "net.yaml"
    result = cli("import", "module", "proj_models:make", "--input", "2,8", "--output", str(out))
    assert result.code == 1, result.stderr
    assert "error[LS161]: output 0 differs between the spec and the module" in result.stderr
    assert not out.exists() and result.stdout == ""


def test_a_spec_with_other_names_or_shapes_is_not_written(project: Path, cli,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    from lazyspec.importers.bodies import Context
    from lazyspec.importers.layers import LayerCall

    real = Context.leaf

    def wrong(self: Context, module: nn.Module, path: str) -> LayerCall:
        call = real(self, module, path)
        return LayerCall(call.cls, call.args, (("bias", False),)) if path == "fc" else call

    monkeypatch.setattr(Context, "leaf", wrong)  # fc written without its bias: it still runs
    result = cli("import", "module", "proj_models:make", "--input", "2,8")
    assert result.code == 1
    assert "error[LS161]: the written spec's state dict differs from the module's: missing: " \
        "fc.bias" in result.stderr
    assert result.stdout == ""


def test_import_help_loads_no_torch() -> None:
    import subprocess

    for args in (["import", "--help"], ["import", "module", "--help"]):
        code = ("import sys; from lazyspec.cli import main\n"
                "try:\n    main(" + repr(args) + ")\nexcept SystemExit:\n    pass\n"
                "print('torch' in sys.modules)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=True)
        assert done.stdout.strip().endswith("False"), done.stdout
        assert "RUNS YOUR CODE" in done.stdout or args == ["import", "--help"]


# --- a second look: nested containers, pinned sizes, messages that say what to do --------------


def test_a_sequential_of_copies_inside_a_sequential_round_trips(tmp_path: Path) -> None:
    """At an index a node cannot be a named `repeat:` (a name is not a number): a block."""
    model = nn.Sequential(nn.Linear(8, 16), nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16)),
                          nn.ReLU(), nn.Sequential(nn.Linear(16, 4)))
    result = imported(model, "4,8")
    spec = spec_module(result.text, tmp_path, "3,8")
    assert state(spec) == state(model)
    same_outputs(model, spec, torch.randn(3, 8))


class LSTMLanguageModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 50)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(x))
        return self.head(h)


def test_sizes_the_trace_pins_are_said_in_a_note() -> None:
    """A batch of 1 (torch fixes sizes 0 and 1) and a batch LSTM's kernel guards on are written
    as numbers; the spec then refuses other sizes, so the note says so."""
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    one = imported(conv, "1,3,16,16")
    assert "input: [1, 3, H, W]" in one.text
    assert any("size 1 at dimension 0" in n and "2 or more" in n for n in one.notes)
    assert imported(conv, "2,3,16,16").notes == []  # B free: nothing to say
    lstm = imported(LSTMLanguageModel(), "2,6:int64")
    assert any("batch size 2" in n for n in lstm.notes), lstm.notes
    assert all(f"# {n}" in lstm.text for n in lstm.notes)


class Layers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0,
                                                                batch_first=True)
                                     for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, is_causal=False)  # forward's default, passed by keyword
        return x


def test_a_container_loop_may_pass_forwards_defaults_by_keyword(tmp_path: Path) -> None:
    model = Layers()
    result = imported(model, "2,5,16")
    assert "repeat: 2" in result.text
    spec = spec_module(result.text, tmp_path, "3,4,16")
    same_outputs(model, spec, torch.randn(3, 4, 16))


class Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Transformer(32, 4, 2, 2, 64, dropout=0.0, batch_first=True)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.t(src, tgt)


def test_a_layer_that_does_not_rebuild_is_described_briefly() -> None:
    """nn.Transformer holds 64 tensors here, its default rebuild 184: a few differences and
    their counts, not both state dicts."""
    with pytest.raises(ImportFailure) as info:
        imported(Wrapped(), "2,6,32", "2,5,32")
    message = info.value.diagnostics[0].message
    assert "holds 184 tensors where the module holds 64" in message
    assert "and 117 more" in message and len(message) < 800


class MakesTensorsOnCPU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + torch.arange(x.shape[1])[None, :, None]  # no device=


def test_a_tensor_made_without_device_gets_a_hint_that_says_so() -> None:
    with pytest.raises(ImportFailure) as info:
        imported(MakesTensorsOnCPU(), "2,16,16")
    assert "device=x.device" in (info.value.diagnostics[0].hint or "")


def test_a_hugging_face_model_is_pointed_at_import_hf() -> None:
    import transformers  # a dev dependency
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64,
                                     n_positions=32, bos_token_id=0, eos_token_id=0)
    with pytest.raises(ImportFailure) as info:
        imported(transformers.GPT2LMHeadModel(config), "2,8:int64")
    assert info.value.diagnostics[0].code == "LS160"
    assert "lazyspec import hf" in (info.value.diagnostics[0].hint or "")
