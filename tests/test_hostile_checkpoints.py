"""The bad-input catalogue, continued: checkpoints that `lazyspec weights` (and `check`, for a run
that names one) cannot read or refuses (issue 13). Each is a clear message and exit 2, never a
traceback, a hang or code from the file.

Each case is a `Bad` from tests/test_bad_inputs.py, run by the same runner (in-process, in a fresh
folder with only the case's files); `prepare` makes what a dict of file texts cannot: sparse files,
folders, FIFOs, device nodes and torch.save files. Pickles with code (the classic `__reduce__`
payload) have their own tests below, which check that the payload never runs.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import fuzz_examples, hang_guard
from hypothesis import given, settings
from hypothesis import strategies as hs
from test_bad_inputs import MLP, Bad, run_case
from test_hostile_files import Hostile, device, fifo

from lazyspec import checkpoint as reader
from lazyspec.checkpoint import MAX_HEADER_BYTES, MAX_INDEX_BYTES

F32 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}  # one 16-byte tensor


def st(header: Any, data: int = 0, length: int | None = None) -> bytes:
    """A safetensors file: header length (or `length`), the header (JSON or raw bytes), data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    return struct.pack("<Q", len(raw) if length is None else length) + raw + b"\0" * data


def weights(name: str, content: bytes | str | None = None, *args: str, **files: bytes | str
            ) -> dict[str, Any]:
    """`lazyspec weights m.yaml NAME --input 2,20 ARGS`, NAME holding `content`."""
    held = {} if content is None else {name: content}
    return {"args": ["weights", "m.yaml", name, "--input", "2,20", *args],
            "files": {"m.yaml": MLP, **held, **files}}


def gate(checkpoint: str, layout: str = "", **files: bytes | str) -> dict[str, Any]:
    """`lazyspec check` with a [[tool.lazyspec.run]] naming `checkpoint`."""
    toml = ("[tool.lazyspec]\nspecs = ['m.yaml']\n[[tool.lazyspec.run]]\nspec = 'm.yaml'\n"
            f"inputs = ['2,20']\ncheckpoint = {json.dumps(checkpoint)}\n{layout}")
    return {"args": ["check", "--lock", "l.lock"],
            "files": {"m.yaml": MLP, "pyproject.toml": toml, **files}}


def sparse(name: str, size: int, head: bytes = b"") -> Callable[[Path], object]:
    def make(folder: Path) -> None:
        with open(folder / name, "wb") as f:
            f.write(head)
            f.truncate(size)
    return make


def saved(name: str, obj: Callable[[], Any], **options: Any) -> Callable[[Path], object]:
    return lambda folder: torch.save(obj(), folder / name, **options)


def torchscript(name: str) -> Callable[[Path], object]:
    def make(folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
            torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), folder / name)
    return make


def truncated_pt(name: str) -> Callable[[Path], object]:
    def make(folder: Path) -> None:
        buffer = io.BytesIO()
        torch.save({"0.weight": torch.zeros(256, 20)}, buffer)
        (folder / name).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return make


def compressed_pt(name: str) -> Callable[[Path], object]:
    """A torch.save zip whose records were recompressed (deflate): torch.save never writes one."""
    def make(folder: Path) -> None:
        buffer = io.BytesIO()
        torch.save({"0.weight": torch.zeros(4)}, buffer)
        with zipfile.ZipFile(buffer) as src, \
                zipfile.ZipFile(folder / name, "w", zipfile.ZIP_DEFLATED) as out:
            for info in src.infolist():
                out.writestr(info.filename, src.read(info.filename))
    return make


def folder_with_index(name: str) -> Callable[[Path], object]:
    def make(folder: Path) -> None:
        (folder / name).mkdir()
        (folder / name / "model.safetensors.index.json").write_text("{}")
    return make


def index(weight_map: dict[str, str]) -> str:
    return json.dumps({"metadata": {}, "weight_map": weight_map})


SHARD = st({"w": F32}, 16)

CASES: list[Bad] = [
    # --- files that are not (whole) files -------------------------------------------------------
    Bad("weights_empty_safetensors", **weights("m.safetensors", b""), code="LS308",
        text="checkpoint m.safetensors: is empty (0 bytes)"),
    Bad("weights_empty_pt", **weights("m.pt", b""), code="LS308", text="is empty (0 bytes)"),
    Bad("weights_missing_file", **weights("nope.safetensors"), code="LS308",
        text="checkpoint nope.safetensors: no such file"),
    Hostile("weights_folder", **weights("ckpt"), code="LS308",
            text="checkpoint ckpt: is a folder\n  hint: name the checkpoint file or its index, "
            "e.g. ckpt/model.safetensors.index.json", prepare=folder_with_index("ckpt")),
    Hostile("weights_fifo", **weights("m.safetensors"), code="LS308",
            text="checkpoint m.safetensors: not a regular file", prepare=fifo("m.safetensors")),
    Hostile("weights_char_device", **weights("m.pt"), code="LS308",
            text="checkpoint m.pt: not a regular file", prepare=device("m.pt", 3)),
    Bad("weights_unknown_format", **weights("m.txt", "a text file, not tensors"), code="LS308",
        text="is not a checkpoint format lazyspec reads"),
    # --- safetensors headers --------------------------------------------------------------------
    Bad("weights_truncated_header", **weights("m.safetensors", b"\x10\x00\x00"), code="LS308",
        text="truncated: 3 bytes, but a safetensors file starts with an 8-byte header length"),
    Bad("weights_header_longer_than_file",
        **weights("m.safetensors", st({"w": F32}, 16, length=10**6)), code="LS308",
        text="the header length (1,000,000 bytes) is larger than the file (86 bytes)"),
    Hostile("weights_header_over_limit", **weights("m.safetensors"), code="LS308",
            text=f"its header is {MAX_HEADER_BYTES + 1:,} bytes, over the limit of "
            f"{MAX_HEADER_BYTES:,}", prepare=sparse("m.safetensors", MAX_HEADER_BYTES + 100,
                                                    struct.pack("<Q", MAX_HEADER_BYTES + 1))),
    Bad("weights_header_not_json", **weights("m.safetensors", st(b"{not json")), code="LS308",
        text="the header is not valid JSON: Expecting property name enclosed in double quotes "
        "(line 1, column 2)"),
    Bad("weights_header_not_utf8", **weights("m.safetensors", st(b'{"\xff": 1}')), code="LS308",
        text="the header is not UTF-8 text (byte 2)"),
    Bad("weights_header_not_object", **weights("m.safetensors", st([1, 2])), code="LS308",
        text="the header is not a JSON object"),
    Bad("weights_header_duplicate_key",
        **weights("m.safetensors", st(b'{"w": ' + json.dumps(F32).encode() + b', "w": '
                                      + json.dumps(F32).encode() + b"}", 16)),
        code="LS308", text="the header names 'w' twice"),
    Bad("weights_header_too_deep", **weights("m.safetensors", st(b"[" * 100_000 + b"]" * 100_000)),
        code="LS308", text="the header is nested too deeply"),
    Bad("weights_entry_not_object", **weights("m.safetensors", st({"w": 5})), code="LS308",
        text="tensor 'w': not an object with dtype, shape and data_offsets"),
    Bad("weights_unknown_dtype",
        **weights("m.safetensors", st({"w": {**F32, "dtype": "F33"}}, 16)), code="LS308",
        text="tensor 'w': unknown dtype 'F33'\n  hint: safetensors dtypes: BOOL, U8"),
    Bad("weights_negative_dim", **weights("m.safetensors", st({"w": {**F32, "shape": [-4]}}, 16)),
        code="LS308", text="tensor 'w': shape [-4] is not a list of sizes"),
    Bad("weights_too_many_dims",
        **weights("m.safetensors", st({"w": {**F32, "shape": [1] * 65}}, 16)), code="LS308",
        text="is not a list of sizes"),
    Bad("weights_offsets_not_a_pair",
        **weights("m.safetensors", st({"w": {**F32, "data_offsets": [16]}}, 16)), code="LS308",
        text="tensor 'w': data_offsets [16] are not [begin, end]"),
    Bad("weights_offsets_reversed",
        **weights("m.safetensors", st({"w": {**F32, "data_offsets": [16, 0]}}, 16)),
        code="LS308", text="data_offsets [16, 0] are not [begin, end]"),
    Bad("weights_size_differs_from_shape",
        **weights("m.safetensors", st({"w": {**F32, "shape": [2, 2], "data_offsets": [0, 8]}},
                                      8)),
        code="LS308", text="tensor 'w': F32 [2, 2] takes 16 bytes, but its data_offsets [0, 8] "
        "hold 8"),
    Bad("weights_offsets_overlap",
        **weights("m.safetensors", st({"a": F32, "b": {**F32, "data_offsets": [8, 24]}}, 24)),
        code="LS308", text="the data of tensors 'a' and 'b' overlap (tensor 'b' starts at byte 8,"
        " before 16)"),
    Bad("weights_offsets_out_of_range", **weights("m.safetensors", st({"w": F32}, 8)),
        code="LS308", text="tensor 'w' has data_offsets [0, 16], out of range: the file holds 8 "
        "bytes of tensor data"),
    Bad("weights_offsets_gap",
        **weights("m.safetensors", st({"a": F32, "b": {**F32, "data_offsets": [24, 40]}}, 40)),
        code="LS308", text="bytes 16 to 24 of the tensor data belong to no tensor"),
    Bad("weights_data_longer_than_tensors", **weights("m.safetensors", st({"w": F32}, 32)),
        code="LS308", text="the tensors cover 16 bytes but the file holds 32 bytes of tensor data"),
    Bad("weights_metadata_not_strings",
        **weights("m.safetensors", st({"__metadata__": {"format": 1}, "w": F32}, 16)),
        code="LS308", text="`__metadata__` must map names to strings"),
    # --- sharded checkpoints --------------------------------------------------------------------
    Bad("weights_index_missing_shard",
        **weights("i.index.json", index({"w": "s1.safetensors", "v": "s2.safetensors"}),
                  **{"s1.safetensors": SHARD}),
        code="LS308", text="checkpoint i.index.json: shard 's2.safetensors' is missing: the index "
        "lists 1 tensor(s) in it ('v', ...)"),
    Bad("weights_index_shard_outside", **weights("i.index.json", index({"w": "../s.safetensors"})),
        code="LS308", text="shard '../s.safetensors' is not a file name inside the index's folder"),
    Bad("weights_index_shard_absolute", **weights("i.index.json", index({"w": "/etc/passwd"})),
        code="LS308", text="shard '/etc/passwd' is not a file name inside the index's folder"),
    Bad("weights_index_not_json", **weights("i.index.json", '{"weight_map": {"w": oops}}'),
        code="LS308", text="i.index.json:1:22: error[LS308]: checkpoint i.index.json: the index is "
        "not valid JSON: Expecting value (line 1, column 22)"),
    Bad("weights_index_no_weight_map", **weights("i.index.json", '{"metadata": {}}'),
        code="LS308", text="the index has no `weight_map` of tensor names to shard files"),
    Bad("weights_index_map_not_strings", **weights("i.index.json", '{"weight_map": {"w": 1}}'),
        code="LS308", text="the index has no `weight_map`"),
    Hostile("weights_index_over_limit", **weights("i.index.json"), code="LS308",
            text=f"the index is larger than {MAX_INDEX_BYTES:,} bytes (limit)",
            prepare=sparse("i.index.json", MAX_INDEX_BYTES + 1, b"{")),
    Bad("weights_index_tensor_not_in_shard",
        **weights("i.index.json", index({"w": "s.safetensors", "v": "s.safetensors"}),
                  **{"s.safetensors": SHARD}),
        code="LS308", text="the index puts tensor 'v' in s.safetensors, whose header does not "
        "hold it"),
    Bad("weights_index_shard_is_an_index",
        **weights("i.index.json", index({"w": "j.json"}), **{"j.json": index({})}),
        code="LS308", text="checkpoint j.json: is not a checkpoint format lazyspec reads"),
    Bad("weights_tensor_in_two_shards",
        **weights("s*.safetensors", **{"s1.safetensors": SHARD, "s2.safetensors": SHARD}),
        code="LS308", text="tensor 'w' is in both s1.safetensors and s2.safetensors"),
    Bad("weights_glob_matches_nothing", **weights("nope-*.safetensors"), code="LS308",
        text="checkpoint nope-*.safetensors: no file matches this glob"),
    # --- PyTorch files --------------------------------------------------------------------------
    Hostile("weights_pickled_module", **weights("m.pt"), code="LS309",
            text="checkpoint m.pt: its pickle calls torch.nn.modules.linear.Linear, which only "
            "torch.load(weights_only=False) would run",
            prepare=saved("m.pt", lambda: torch.nn.Linear(20, 256))),
    Hostile("weights_torchscript", **weights("m.pt"), code="LS309",
            text="it is a TorchScript archive, which only torch.load(weights_only=False) would "
            "run", prepare=torchscript("m.pt")),
    Hostile("weights_pt_holds_a_list", **weights("m.pt"), code="LS308",
            text="checkpoint m.pt: holds a list, not a state dict (names -> tensors)",
            prepare=saved("m.pt", lambda: [torch.zeros(1)])),
    Hostile("weights_pt_mapping_with_a_number", **weights("m.pt"), code="LS308",
            text="holds a mapping whose entry 'n' is a int, not a state dict",
            prepare=saved("m.pt", lambda: {"w": torch.zeros(1), "n": 3})),
    Hostile("weights_pt_truncated", **weights("m.pt"), code="LS308",
            text="checkpoint m.pt: not a valid zip archive (torch.save's format)",
            prepare=truncated_pt("m.pt")),
    Hostile("weights_pt_compressed_record", **weights("m.pt"), code="LS308",
            text="is compressed; torch.save stores records uncompressed",
            prepare=compressed_pt("m.pt")),
    Bad("weights_pt_garbage", **weights("m.pt", b"\x80\x02garbage" * 10), code="LS308",
        text="checkpoint m.pt: torch cannot read it: "),
    Hostile("weights_names_collide_under_layout", **weights("m.pt", None, "--strip-prefix", "x."),
            code="LS308", text="checkpoint m.pt: 'x.0.bias' and '0.bias' both become '0.bias' "
            "under --strip-prefix x.",
            prepare=saved("m.pt", lambda: {"x.0.bias": torch.zeros(256),
                                           "0.bias": torch.zeros(256)})),
    # --- flags ----------------------------------------------------------------------------------
    Bad("weights_strip_prefix_empty",
        **weights("m.safetensors", SHARD, "--strip-prefix", ""),
        text="--strip-prefix needs a non-empty value"),
    Bad("weights_transpose_empty", **weights("m.safetensors", SHARD, "--transpose", ""),
        text="--transpose needs a non-empty value"),
    Bad("weights_format_unknown", **weights("m.safetensors", SHARD, "--format", "yaml"),
        text="unknown format 'yaml'"),
    Bad("weights_no_checkpoint_argument", args=["weights", "m.yaml"], files={"m.yaml": MLP},
        code=None, text="Missing argument 'checkpoint'"),
    # --- the gate: [[tool.lazyspec.run]] checkpoint ---------------------------------------------
    Bad("weights_config_layout_unknown_key",
        **gate("m.safetensors", "checkpoint-layout = { strip_prefix = 'x.' }\n"), code="LS304",
        text="unknown key 'strip_prefix' in [[tool.lazyspec.run]] #1 checkpoint-layout"),
    Bad("weights_config_layout_without_checkpoint",
        **{**gate("m.safetensors"), "files": {
            "m.yaml": MLP, "pyproject.toml": "[[tool.lazyspec.run]]\nspec = 'm.yaml'\n"
            "checkpoint-layout = { ignore = ['*.bias'] }\n"}},
        code="LS304", text="[[tool.lazyspec.run]] #1: `checkpoint-layout` without a `checkpoint`"),
    Bad("weights_config_checkpoint_not_a_string",
        **{**gate("m.safetensors"), "files": {
            "m.yaml": MLP, "pyproject.toml": "[[tool.lazyspec.run]]\nspec = 'm.yaml'\n"
            "checkpoint = 3\n"}},
        code="LS304", text="[[tool.lazyspec.run]] #1 `checkpoint` must be a path"),
    Bad("weights_config_layout_empty_glob",
        **gate("m.safetensors", "checkpoint-layout = { transpose = [''] }\n"), code="LS304",
        text="checkpoint-layout: an empty prefix or glob"),
    Bad("weights_config_layout_not_a_table",
        **gate("m.safetensors", "checkpoint-layout = 'model.'\n"), code="LS304",
        text="`checkpoint-layout` must be a table"),
    Bad("weights_gate_checkpoint_missing", **gate("nope.safetensors"), code="LS308",
        text="m.yaml: checkpoint nope.safetensors: no such file"),
    Bad("weights_gate_checkpoint_unreadable", **gate("m.safetensors", **{
        "m.safetensors": st({"w": F32}, 8)}), code="LS308",
        text="m.yaml: checkpoint m.safetensors: tensor 'w' has data_offsets [0, 16], out of range"),
]


def test_the_catalogue_is_large_and_named() -> None:
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES), "two cases share an id"
    assert all(c.id.startswith("weights_") for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_checkpoint(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, tmp_path, monkeypatch, capsys, getattr(case, "prepare", None))


# --- pickles with code: the payload never runs -------------------------------------------------


class Payload:
    """The classic: unpickling calls os.system, here to create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _zip(path: Path, marker: Path) -> None:
    torch.save({"0.weight": Payload(marker)}, path)


def _old(path: Path, marker: Path) -> None:
    torch.save({"0.weight": Payload(marker)}, path, _use_new_zipfile_serialization=False)


def _raw(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"0.weight": Payload(marker)}, protocol=2))


PAYLOADS = {"zip.pt": _zip, "old.pt": _old, "pytorch_model.bin": _raw}


@pytest.mark.parametrize("force_unsafe_env", [False, True])
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_a_pickle_payload_never_runs(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     name: str, force_unsafe_env: bool) -> None:
    """Refused with LS309 (exit 2), and the marker is never created, also with torch's
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set (it cannot override an explicit weights_only=True)."""
    marker = tmp_path / "PAYLOAD-RAN"
    PAYLOADS[name](tmp_path / name, marker)
    if force_unsafe_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    spec = tmp_path / "m.yaml"
    spec.write_text(MLP)
    r = cli("weights", spec, tmp_path / name, "--input", "2,20")
    assert r.code == 2 and "error[LS309]" in r.stderr, r.stderr
    assert "its pickle calls posix.system" in r.stderr or "its pickle calls nt.system" in r.stderr
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_the_payloads_are_live(tmp_path: Path, name: str) -> None:
    """The test above would notice: loading these files the unsafe way does create the marker."""
    marker = tmp_path / "PAYLOAD-RAN"
    PAYLOADS[name](tmp_path / name, marker)
    if name.endswith(".bin"):
        pickle.loads((tmp_path / name).read_bytes())  # unsafe on purpose: the point of the test
    else:
        torch.load(tmp_path / name, weights_only=False)
    assert marker.exists()


def test_a_payload_in_a_gate_run_is_refused(cli, tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "PAYLOAD-RAN"
    _zip(tmp_path / "m.pt", marker)
    for name, content in gate("m.pt")["files"].items():
        (tmp_path / name).write_text(content)
    monkeypatch.chdir(tmp_path)
    r = cli("check", "--lock", "l.lock")
    assert r.code == 2 and "error[LS309]" in r.stderr and not marker.exists()


def test_torch_reads_no_more_than_its_cap(tmp_path: Path, monkeypatch) -> None:
    """A pickle larger than the cap (here lowered to 4 KB) is refused, not read whole."""
    torch.save({f"t{i}": torch.zeros(1) for i in range(2000)}, tmp_path / "big.pt",
               _use_new_zipfile_serialization=False)
    monkeypatch.setattr(reader, "MAX_TORCH_READ_BYTES", 4096)
    with pytest.raises(reader.CheckpointError, match="torch would read more than 4,096 bytes"):
        reader.read_checkpoint(tmp_path / "big.pt")


# --- fuzzing: any bytes are a checkpoint or a clear error ---------------------------------------

_JSONISH = hs.recursive(hs.none() | hs.booleans() | hs.integers(-2**70, 2**70) | hs.text(max_size=8)
                        | hs.sampled_from(["F32", "BF16", "I64", "F4", "F6_E2M3"]),
                        lambda inner: hs.lists(inner, max_size=4)
                        | hs.dictionaries(hs.sampled_from(["dtype", "shape", "data_offsets",
                                                           "__metadata__", "w", "v"]), inner,
                                          max_size=4), max_leaves=12)


def _read(tmp_path: Path, name: str, content: bytes) -> None:
    """The property: a checkpoint, or CheckpointError; never another exception, never a hang."""
    path = tmp_path / name
    path.write_bytes(content)
    with hang_guard(name):
        try:
            reader.read_checkpoint(path)
        except reader.CheckpointError as e:
            assert e.diagnostics and e.diagnostics[0].code in ("LS308", "LS309")


@settings(max_examples=fuzz_examples(200))
@given(header=hs.dictionaries(hs.text(max_size=6), _JSONISH, max_size=5) | _JSONISH,
       data=hs.integers(0, 64), length_delta=hs.sampled_from([0, 0, 0, -1, 1, 2**40]))
def test_fuzz_safetensors_headers(tmp_path_factory: pytest.TempPathFactory, header: Any,
                                  data: int, length_delta: int) -> None:
    raw = json.dumps(header).encode("utf-8")
    content = st_bytes(raw, data, max(0, len(raw) + length_delta))
    _read(tmp_path_factory.mktemp("st"), "m.safetensors", content)


def st_bytes(raw: bytes, data: int, length: int) -> bytes:
    return struct.pack("<Q", length) + raw + b"\0" * data


@settings(max_examples=fuzz_examples(60))
@given(flips=hs.lists(hs.tuples(hs.integers(0, 10**6), hs.integers(0, 255)), min_size=1,
                      max_size=6), cut=hs.integers(0, 10**6) | hs.none())
def test_fuzz_pytorch_files(tmp_path_factory: pytest.TempPathFactory,
                            flips: list[tuple[int, int]], cut: int | None) -> None:
    """A torch.save file (zip or pre-1.6 form) with bytes changed or cut short."""
    buffer = io.BytesIO()
    legacy = bool(flips[0][1] % 2)
    torch.save({"0.weight": torch.zeros(4, 3), "0.bias": torch.zeros(4)}, buffer,
               _use_new_zipfile_serialization=not legacy)
    data = bytearray(buffer.getvalue())
    for at, value in flips:
        data[at % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    _read(tmp_path_factory.mktemp("pt"), "m.pt", bytes(data))
