"""The catalogue of bad uses of `lazyspec import module`: what cannot be loaded or called (LS310,
exit 2), bad flags (LS301, exit 2), and modules a spec cannot express (LS160, exit 1), each named
at its module path and said why, never a traceback, never a silently different spec.

The cases reuse tests/test_bad_inputs.py's `Bad` and its runner (in-process, in a fresh folder
that holds the case's Python module, under a hang guard). Each case has a module of its own name,
so no case imports another's; sys.path and sys.modules are restored after each.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import test_bad_inputs as catalogue
from test_bad_inputs import Bad

HEAD = "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"


def model(forward: str, init: str = "self.fc = nn.Linear(8, 8)") -> str:
    """A module file whose `make()` returns a model with this __init__ body and forward body."""
    return (HEAD + "class Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            + "".join(f"        {line}\n" for line in init.splitlines())
            + "\n    def forward(self, x):\n"
            + "".join(f"        {line}\n" for line in forward.splitlines())
            + "\n\ndef make():\n    return Model()\n")


def case(id: str, source: str, *flags: str, factory: str = "make", exit: int = 1,
         code: str | None = "LS160", text: str = "") -> Bad:
    """`lazyspec import module mod_ID:FACTORY FLAGS` with mod_ID.py holding `source`."""
    name = f"mod_{id}"
    args = ["import", "module", f"{name}:{factory}", *(flags or ("--input", "2,8"))]
    return Bad(id, args, {f"{name}.py": source}, exit, code, text)


OK = model("return self.fc(x)")
BRANCHY = (HEAD + "class Gate(nn.Module):\n    def forward(self, x):\n"
           "        if x.sum() > 0:\n            return x\n        return -x\n\n\n"
           "class Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.fc = nn.Linear(8, 8)\n        self.gate = Gate()\n\n"
           "    def forward(self, x):\n        return self.gate(self.fc(x))\n\n\n"
           "def make():\n    return Model()\n")

CASES: list[Bad] = [
    # --- what cannot be loaded or called: exit 2 ------------------------------------------------
    Bad("target_not_module_colon_factory", ["import", "module", "just_a_name", "--input", "2,8"],
        code="LS301", text="'just_a_name' is not PKG.MODULE:FACTORY"),
    Bad("target_with_path", ["import", "module", "../evil.py:make", "--input", "2,8"],
        code="LS301", text="is not PKG.MODULE:FACTORY"),
    Bad("module_unknown", ["import", "module", "no_such_package_xyz.models:make", "--input",
                           "2,8"], code="LS310",
        text="cannot import 'no_such_package_xyz.models': ModuleNotFoundError"),
    case("module_raises_on_import", "raise RuntimeError('boom while importing')\n", exit=2,
         code="LS310", text="cannot import 'mod_module_raises_on_import': RuntimeError: boom "
         "while importing"),
    case("module_exits_on_import", "import sys\nsys.exit(3)\n", exit=2, code="LS310",
         text="SystemExit"),
    case("attribute_missing", OK, factory="nope", exit=2, code="LS310",
         text="'mod_attribute_missing' has no attribute 'nope'"),
    case("factory_not_callable", OK + "\nWIDTH = 3\n", factory="WIDTH", exit=2, code="LS310",
         text="'mod_factory_not_callable:WIDTH' is not callable"),
    case("factory_raises", OK + "\ndef broken():\n    raise ValueError('no such size')\n",
         factory="broken", exit=2, code="LS310",
         text="the factory 'mod_factory_raises:broken' raised ValueError: no such size"),
    case("factory_returns_no_module", OK + "\ndef number():\n    return 3\n", factory="number",
         exit=2, code="LS310", text="returned int, not an nn.Module"),
    case("args_wrong_keyword", OK, "--args", '{"width": 4}', "--input", "2,8", exit=2,
         code="LS310", text="raised TypeError"),
    # --- bad flags: exit 2, before anything is imported -----------------------------------------
    case("args_not_json", OK, "--args", "{width: 4}", "--input", "2,8", exit=2, code="LS301",
         text="--args is not valid JSON"),
    case("args_not_object_or_list", OK, "--args", '"wide"', "--input", "2,8", exit=2,
         code="LS301", text="--args must be a JSON object or list, not str"),
    case("args_too_large", OK, "--args", "[" + "1," * 40_000 + "1]", "--input", "2,8", exit=2,
         code="LS301", text="over the limit of 65,536 bytes"),
    case("args_nested_deep", OK, "--args", "[" * 20_000 + "]" * 20_000, "--input", "2,8",
         exit=2, code="LS301", text="--args is not valid JSON"),
    case("input_missing", OK, "--args", "{}", exit=2, code="LS301",
         text="give the model's input shapes with --input"),
    case("input_named_dims", OK, "--input", "B,8", exit=2, code="LS301",
         text="give sizes, not names"),
    case("input_too_many", OK, "--input", "2,8", "--input", "2,8", exit=2, code="LS301",
         text="2 --input flags, but forward takes 1 argument(s)"),
    case("input_unknown_name", OK, "--input", "y=2,8", exit=2, code="LS301",
         text="forward has no argument 'y'"),
    case("output_is_a_folder", OK, "--input", "2,8", "--output", ".", exit=2, code="LS100",
         text="it is a folder"),
    # --- what a spec cannot express: exit 1, at the module path -----------------------------------
    case("input_does_not_fit", OK, "--input", "2,9", text="fails at the given input"),
    Bad("model_is_one_layer", ["import", "module", "torch.nn:Linear", "--args", "[8, 4]",
                               "--input", "2,8"], exit=1, code="LS160",
        text="the model is one torch.nn layer (Linear): its tensors are named without a module "
        "path"),
    case("data_dependent_control_flow", BRANCHY,
         text="module 'gate' (Gate) has data-dependent control flow"),
    case("data_dependent_python_number", model("n = int(x.sum())\nreturn self.fc(x) * n"),
         text="the model (Model) cannot be traced"),
    case("unknown_function", model("return torch.rsqrt(self.fc(x))"),
         text="the model (Model): torch.rsqrt(...) has no spec op"),
    case("functional_with_parameters", model("return F.linear(x, self.fc.weight)"),
         text="the model (Model): torch.nn.functional.linear(...) has no spec op"),
    case("reads_a_layers_tensor", model("return self.fc(x) * self.fc.bias"),
         text="`self.fc.bias` reads 'fc.bias', a tensor of its submodule 'fc'"),
    case("size_depends_on_input", model("return torch.roll(self.fc(x), x.shape[0] // 2, 0)"),
         text="which depends on the input's shape"),
    case("adds_a_number", model("return self.fc(x) + 1"),
         text="`+` adds a number to a tensor: no spec op does"),
    case("slices_a_tensor", model("return self.fc(x)[:, 1:3]"),
         text="indexes a tensor with (slice(None, None, None), slice(1, 3, None))"),
    case("masked_fill_not_causal", model("y = self.fc(x)\nreturn y.masked_fill(y > 0, 0.0)"),
         text="Tensor.masked_fill(...) with a value other than -inf has no spec op"),
    case("grouped_query_repeat", HEAD + "from reference_llama import Llama, LLAMA2_70B_TINY\n\n"
         "def make():\n    return Llama(**LLAMA2_70B_TINY)\n", "--input", "2,8:int64",
         text="module 'layers.0.self_attn' (LlamaAttention): Tensor.repeat_interleave(...) has "
         "no spec op (for grouped-query attention"),
    case("module_never_called", model("return self.fc(x)", "self.fc = nn.Linear(8, 8)\n"
                                      "self.aux = nn.Linear(8, 2)"),
         text="its module 'aux' (Linear) holds tensors but forward never calls it"),
    case("lazy_layer", model("return self.fc(x)", "self.fc = nn.LazyLinear(8)"),
         text="module 'fc' (LazyLinear) is still lazy"),
    case("several_dtypes", model("return self.b(self.a(x))", "self.a = nn.Linear(8, 8)\n"
                                 "self.b = nn.Linear(8, 8).double()"),
         text="the module's tensors have several dtypes"),
    case("one_module_two_names", model("return self.b(self.a(x))", "self.a = nn.Linear(8, 8)\n"
                                       "self.b = self.a"),
         text="module 'b' (Linear) is also registered as 'a'"),
    case("returns_a_dict", model("return {'y': self.fc(x)}"),
         text="the model (Model) returns a dict: a spec returns tensors or a tuple of them"),
    case("container_out_of_order", model(
        "return self.layers[0](self.layers[1](x))",
        "self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))"),
        text="calls the modules of its ModuleList 'layers' as [1, 0], not each of [0, 1] once "
        "in order"),
    case("container_work_between", model(
        "for layer in self.layers:\n    x = layer(x) * 2\nreturn x",
        "self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))"),
        text="the modules of its ModuleList 'layers' are not called one after another"),
    case("reserved_attribute_name", model("return self.outputs(x)", "self.outputs = "
                                          "nn.Linear(8, 8)"),
         text="its module 'outputs' cannot be a spec node's name"),
    case("buffer_no_scheme", model("return self.fc(x) * self.table",
                                   "self.fc = nn.Linear(8, 8)\n"
                                   "self.register_buffer('table', torch.linspace(0, 1, 8))"),
         text="reads the buffer 'table' [8], whose values no Buffer scheme computes"),
    case("half_frozen_layer", model("return self.fc(x)", "self.fc = nn.Linear(8, 8)\n"
                                    "self.fc.bias.requires_grad_(False)"),
         text="module 'fc' (Linear) has both frozen and trainable parameters"),
    case("forward_varargs", HEAD + "class Inner(nn.Module):\n    def forward(self, *xs):\n"
         "        return xs[0]\n\n\nclass Model(nn.Module):\n    def __init__(self):\n"
         "        super().__init__()\n        self.inner = Inner()\n\n"
         "    def forward(self, x):\n        return self.inner(x)\n\n\n"
         "def make():\n    return Model()\n",
         text="module 'inner' (Inner): forward takes *xs"),
]


def test_the_catalogue_holds_its_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES), "two cases share an id"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_import(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    path, modules = list(sys.path), set(sys.modules)
    try:
        _, err = catalogue.run_case(case, tmp_path, monkeypatch, capsys)
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if name.startswith("mod_"):
                del sys.modules[name]
    assert not (tmp_path / "imported.yaml").exists()
    if case.exit:  # a spec that was refused is not printed either
        assert "lazyspec: wrote" not in err
