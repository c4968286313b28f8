"""Checkpoints as plain records read from their headers: every tensor's name, shape and dtype, and
the file that holds it. No tensor data is read.

One reader per format:

- `.safetensors`: the 8-byte little-endian header length and the JSON header, with the stdlib
  only, checked as the safetensors library checks them before it loads a file (known dtypes,
  byte sizes that match the shapes, data offsets that tile the data region exactly);
- a sharded checkpoint's index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`):
  its `weight_map`, then each shard it names;
- a glob of shards (`ckpt/model-*.safetensors`): each file;
- PyTorch `.pt`/`.pth`/`.bin`/`.ckpt`: `torch.load(weights_only=True)` onto `meta` under a fake
  tensor mode, so no storage is read (old non-zip files included); never `weights_only=False`.
  torch is imported there, and only there.

Every read is bounded: regular files only, and caps on a header, an index, what torch may read of a
file before its tensor data, shards and tensors. A file that cannot be read raises CheckpointError
(LS308, exit 2); one that would need code to load it (a pickle that names a function), LS309.
"""

from __future__ import annotations

import contextlib
import glob as globbing
import io
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeGuard

from lazyspec.errors import CheckpointError, Diagnostic, Location, shown

MAX_HEADER_BYTES = 16_000_000  # one safetensors header; real ones hold ~100 bytes per tensor
MAX_INDEX_BYTES = 16_000_000  # an index's JSON (LLaMA-2 70B's: 66 KB)
MAX_TORCH_READ_BYTES = 64_000_000  # what torch may read of a .pt: its zip directory and pickle
MAX_SHARDS = 4096
MAX_TENSORS = 500_000  # in one checkpoint, all shards together
MAX_DIMS = 64

# safetensors' dtype names -> (torch's name, bits per element), as the format lists them
SAFETENSORS_DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8), "U8": ("uint8", 8), "I8": ("int8", 8), "U16": ("uint16", 16),
    "I16": ("int16", 16), "U32": ("uint32", 32), "I32": ("int32", 32), "U64": ("uint64", 64),
    "I64": ("int64", 64), "F16": ("float16", 16), "BF16": ("bfloat16", 16),
    "F32": ("float32", 32), "F64": ("float64", 64), "C64": ("complex64", 64),
    "F8_E5M2": ("float8_e5m2", 8), "F8_E4M3": ("float8_e4m3fn", 8),
    "F8_E8M0": ("float8_e8m0fnu", 8), "F6_E2M3": ("float6_e2m3", 6),
    "F6_E3M2": ("float6_e3m2", 6), "F4": ("float4_e2m1", 4),
}
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# A training checkpoint often holds the state dict under one of these keys, beside the epoch
# and the optimizer's state (PyTorch Lightning: state_dict; nanoGPT: model).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "state")
FORMATS_HINT = ("give a .safetensors file, a PyTorch .pt/.bin file (torch.save), a sharded "
                "checkpoint's index (model.safetensors.index.json), or a quoted glob of shards")


@dataclass(frozen=True)
class TensorRecord:
    """One tensor as a header describes it."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch's name: float32, bfloat16
    file: str  # the file (shard) that holds it

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Checkpoint:
    """Every tensor of a checkpoint, from one file, an index and its shards, or a glob."""

    path: str  # as given
    format: str  # safetensors | pytorch
    tensors: dict[str, TensorRecord] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    index: str | None = None  # the index file of a sharded checkpoint
    notes: list[str] = field(default_factory=list)


@dataclass
class _FileRead:
    format: str
    records: list[TensorRecord]
    notes: list[str] = field(default_factory=list)


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint at `path`: a tensor file, a sharded checkpoint's index (`.json`), or a glob
    of shards. Raises CheckpointError."""
    text = os.fspath(path)
    if not os.path.lexists(text) and any(c in text for c in "*?["):
        return read_shards(text)
    if text.endswith(".json"):
        return read_index(Path(text))
    read = read_tensor_file(Path(text))
    return _assemble(text, [(text, read)])


def _fail(path: str | os.PathLike[str], reason: str, hint: str | None = None,
          code: str = "LS308", location: Location | None = None) -> CheckpointError:
    return CheckpointError([Diagnostic(code, f"checkpoint {os.fspath(path)}: {reason}", location,
                                       hint=hint)])


def _size(path: Path) -> int:
    """The size of a regular, non-empty file; CheckpointError for anything else."""
    from lazyspec.fileio import regular_size

    try:
        size = regular_size(path)
    except IsADirectoryError:
        raise _fail(path, "is a folder", _folder_hint(path)) from None
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None
    if size == 0:
        raise _fail(path, "is empty (0 bytes)", "a download or a save that did not finish?")
    return size


def _folder_hint(folder: Path) -> str:
    """Name what in a folder could be given instead (the index first)."""
    found: list[str] = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for i, entry in enumerate(entries):
            if i >= 10_000:  # a huge folder: do not list it all to write a hint
                break
            if entry.name.endswith((".index.json", ".safetensors", *TORCH_SUFFIXES)):
                found.append(entry.name)
    found.sort(key=lambda n: (not n.endswith(".json"), n))
    if found:
        return f"name the checkpoint file or its index, e.g. {folder / found[0]}"
    return FORMATS_HINT


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; open() errors are reported
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None
    with f:
        yield f


def read_tensor_file(path: Path) -> _FileRead:
    """One file of tensors, of whichever format its first bytes (or its suffix) say."""
    _size(path)
    with _opened(path) as f:
        head = f.read(512)
    kind = _sniff(head, path.suffix.lower())
    if kind == "safetensors":
        return _FileRead("safetensors", read_safetensors(path))
    if kind == "pytorch":
        return read_pytorch(path)
    raise _fail(path, "is not a checkpoint format lazyspec reads", FORMATS_HINT)


def _sniff(head: bytes, suffix: str) -> str | None:
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or head[257:262] == b"ustar":
        return "pytorch"  # a zip (torch.save), a pickle (torch.save before 1.6) or a tar
    if head[8:9] == b"{":  # a header length, then the header's JSON object
        return "safetensors"
    if suffix == ".safetensors":
        return "safetensors"  # its reader says what is wrong
    return "pytorch" if suffix in TORCH_SUFFIXES else None


# --- safetensors ---------------------------------------------------------------------------------


def read_safetensors(path: Path) -> list[TensorRecord]:
    """The tensors of a .safetensors file, from its header alone."""
    size = _size(path)
    with _opened(path) as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _fail(path, f"truncated: {size} bytes, but a safetensors file starts with an "
                        "8-byte header length", "a download that did not finish?")
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            raise _fail(path, f"the header length ({length:,} bytes) is larger than the file "
                        f"({size:,} bytes)", "a truncated download, or not a safetensors file")
        if length > MAX_HEADER_BYTES:
            raise _fail(path, f"its header is {length:,} bytes, over the limit of "
                        f"{MAX_HEADER_BYTES:,}")
        raw = f.read(length)
    if len(raw) < length:  # the file shrank while it was read
        raise _fail(path, f"truncated: the header needs {length:,} bytes, the file holds "
                    f"{len(raw):,}")
    header = _json(raw, path, "header")
    return _safetensors_records(header, path, size - 8 - length)


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _json(raw: bytes, path: Path, what: str, text_file: bool = False) -> Any:
    """JSON with no duplicate keys; a located error (in a text file) for anything else."""
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique)
    except UnicodeDecodeError as e:
        raise _fail(path, f"the {what} is not UTF-8 text (byte {e.start:,})") from None
    except _DuplicateKey as e:
        raise _fail(path, f"the {what} names {shown(e.key)} twice") from None
    except json.JSONDecodeError as e:
        where = Location(str(path), e.lineno, e.colno) if text_file else None
        raise _fail(path, f"the {what} is not valid JSON: {e.msg} (line {e.lineno}, column "
                    f"{e.colno})", location=where) from None
    except ValueError as e:  # a number too long for Python's int
        raise _fail(path, f"the {what} is not valid JSON: {e}") from None
    except RecursionError:
        raise _fail(path, f"the {what} is nested too deeply") from None


def _safetensors_records(header: Any, path: Path, data_size: int) -> list[TensorRecord]:
    if not isinstance(header, dict):
        raise _fail(path, "the header is not a JSON object")
    if len(header) > MAX_TENSORS + 1:
        raise _fail(path, f"the header lists {len(header):,} tensors, over the limit of "
                    f"{MAX_TENSORS:,}")
    records: list[TensorRecord] = []
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise _fail(path, "`__metadata__` must map names to strings")
            continue
        record, span = _safetensors_entry(name, info, path)
        records.append(record)
        spans.append(span)
    _check_offsets(spans, path, data_size)
    return records


def _sizes(value: Any, count: int | None = None) -> TypeGuard[list[int]]:
    """A list of whole numbers >= 0 (of `count` items)."""
    return (isinstance(value, list) and len(value) <= MAX_DIMS
            and (count is None or len(value) == count)
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63
                    for v in value))


def _safetensors_entry(name: str, info: Any, path: Path
                       ) -> tuple[TensorRecord, tuple[int, int, str]]:
    what = f"tensor {shown(name)}"
    if not isinstance(info, dict):
        raise _fail(path, f"{what}: not an object with dtype, shape and data_offsets")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise _fail(path, f"{what}: unknown dtype {shown(dtype)}",
                    "safetensors dtypes: " + ", ".join(SAFETENSORS_DTYPES))
    if not _sizes(shape):
        raise _fail(path, f"{what}: shape {shown(shape)} is not a list of sizes")
    if not _sizes(offsets, 2) or offsets[0] > offsets[1]:
        raise _fail(path, f"{what}: data_offsets {shown(offsets)} are not [begin, end]")
    torch_name, bits = SAFETENSORS_DTYPES[dtype]
    dims: list[int] = info["shape"]
    begin, end = info["data_offsets"]
    nbits = math.prod(dims) * bits
    if nbits % 8 or nbits // 8 != end - begin:
        raise _fail(path, f"{what}: {dtype} {shape} takes {nbits / 8:,g} bytes, but its "
                    f"data_offsets [{begin:,}, {end:,}] hold {end - begin:,}")
    return TensorRecord(name, tuple(dims), torch_name, str(path)), (begin, end, name)


def _check_offsets(spans: list[tuple[int, int, str]], path: Path, data_size: int) -> None:
    """The tensors' data must lie inside the file, without overlaps or gaps, and fill it: the
    safetensors library refuses to load a file otherwise."""
    if spans:
        begin, end, name = max(spans, key=lambda s: s[1])
        if end > data_size:
            raise _fail(path, f"tensor {shown(name)} has data_offsets [{begin:,}, {end:,}], "
                        f"out of range: the file holds {data_size:,} bytes of tensor data",
                        "a truncated download?")
    covered, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin < covered:
            raise _fail(path, f"the data of tensors {shown(previous)} and {shown(name)} "
                        f"overlap (tensor {shown(name)} starts at byte {begin:,}, before "
                        f"{covered:,})")
        if begin > covered:
            raise _fail(path, f"bytes {covered:,} to {begin:,} of the tensor data belong to no "
                        "tensor (safetensors requires them to be contiguous)")
        covered, previous = end, name
    if covered != data_size:
        raise _fail(path, f"the tensors cover {covered:,} bytes but the file holds "
                    f"{data_size:,} bytes of tensor data (safetensors requires them to match)")


# --- sharded checkpoints -------------------------------------------------------------------------


def read_index(path: Path) -> Checkpoint:
    """A sharded checkpoint: its index's `weight_map` (tensor name -> shard file), then every
    shard's tensors. A shard that is missing, or that lacks a tensor the index puts in it, fails."""
    from lazyspec.fileio import FileTooLarge, read_capped

    _size(path)
    try:
        raw = read_capped(path, MAX_INDEX_BYTES)
    except FileTooLarge:
        raise _fail(path, f"the index is larger than {MAX_INDEX_BYTES:,} bytes (limit)") from None
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None
    doc = _json(raw, path, "index", text_file=True)
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str)
                                                   for v in weight_map.values()):
        raise _fail(path, "the index has no `weight_map` of tensor names to shard files",
                    "a Hugging Face index: {\"weight_map\": {\"NAME\": \"model-00001-of-00002"
                    ".safetensors\", ...}}", location=Location(str(path), 1, 1))
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(_shard_name(shard, path), []).append(name)
    if len(by_shard) > MAX_SHARDS:
        raise _fail(path, f"the index names {len(by_shard):,} shards, over the limit of "
                    f"{MAX_SHARDS:,}")
    files = [(str(path.parent / shard), _read_shard(path, shard, names))
             for shard, names in by_shard.items()]
    checkpoint = _assemble(str(path), files)
    checkpoint.index = str(path)
    unlisted = len(checkpoint.tensors) - len(weight_map)
    if unlisted:
        checkpoint.notes.append(f"{unlisted} tensor(s) in the shards are not in the index's "
                                "weight_map (they are compared too: a loader reads whole shards)")
    return checkpoint


def _shard_name(shard: str, index: Path) -> str:
    """A shard's name as the index gives it: a path inside the index's folder."""
    parts = PurePosixPath(shard.replace("\\", "/"))
    if not shard or parts.is_absolute() or ".." in parts.parts or re.match(r"^[A-Za-z]:", shard):
        raise _fail(index, f"shard {shown(shard)} is not a file name inside the index's folder",
                    "an index names its shards relative to its own folder")
    return parts.as_posix()


def _read_shard(index: Path, shard: str, names: list[str]) -> _FileRead:
    shard_path = index.parent / shard
    if not os.path.lexists(shard_path):
        raise _fail(index, f"shard {shown(shard)} is missing: the index lists {len(names):,} "
                    f"tensor(s) in it ({shown(names[0])}, ...)",
                    "download every shard the index names")
    read = read_tensor_file(shard_path)
    held = {r.name for r in read.records}
    absent = [n for n in names if n not in held]
    if absent:
        more = f" (and {len(absent) - 1:,} more)" if len(absent) > 1 else ""
        raise _fail(index, f"the index puts tensor {shown(absent[0])} in {shard}, whose header "
                    f"does not hold it{more}")
    return read


def read_shards(pattern: str) -> Checkpoint:
    """Every file a glob matches, as one checkpoint."""
    matches: list[str] = []
    for match in globbing.iglob(pattern):
        matches.append(match)
        if len(matches) > MAX_SHARDS:
            raise _fail(pattern, f"the glob matches more than {MAX_SHARDS:,} files (limit)")
    if not matches:
        raise _fail(pattern, "no file matches this glob")
    return _assemble(pattern, [(m, read_tensor_file(Path(m))) for m in sorted(matches)])


def _assemble(path: str, files: list[tuple[str, _FileRead]]) -> Checkpoint:
    """One checkpoint from its files; a tensor in two of them fails."""
    formats = sorted({read.format for _, read in files})
    checkpoint = Checkpoint(path, "+".join(formats), files=[f for f, _ in files])
    for _, read in files:
        checkpoint.notes += read.notes
        for record in read.records:
            other = checkpoint.tensors.get(record.name)
            if other is not None:
                raise _fail(path, f"tensor {shown(record.name)} is in both {other.file} and "
                            f"{record.file}")
            checkpoint.tensors[record.name] = record
        if len(checkpoint.tensors) > MAX_TENSORS:
            raise _fail(path, f"more than {MAX_TENSORS:,} tensors (limit)")
    return checkpoint


# --- PyTorch files -------------------------------------------------------------------------------


class _CappedReader(io.RawIOBase):
    """A file that refuses to be read past `limit` bytes in all: torch's reader reads a file's
    zip directory and its pickle, never its tensor data, so more means a hostile file."""

    def __init__(self, f: Any, limit: int):  # a file opened "rb"
        self.f, self.limit, self.done, self.exceeded = f, limit, 0, False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.done >= self.limit:
            self.exceeded = True
            raise OSError(f"read limit of {self.limit:,} bytes reached")
        view = memoryview(buffer).cast("B")
        n = self.f.readinto(view[: self.limit - self.done]) or 0
        self.done += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.f.seek(offset, whence))

    def tell(self) -> int:
        return int(self.f.tell())


def read_pytorch(path: Path) -> _FileRead:
    """A torch.save file's tensors: `torch.load(weights_only=True)` onto meta under a fake tensor
    mode, so that no storage is read (the zip format and the older pickle format alike)."""
    import warnings

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    _size(path)
    with _opened(path) as f:
        reader = _CappedReader(f, MAX_TORCH_READ_BYTES)
        _check_zip(reader, path)
        try:
            with warnings.catch_warnings(), FakeTensorMode():
                warnings.simplefilter("ignore")  # torch's own notes on old pickle protocols
                loaded = torch.load(io.BufferedReader(reader), map_location="meta",
                                    weights_only=True)
        except Exception as e:  # torch's reader on arbitrary bytes can raise any type; no code
            raise _torch_error(path, e, reader) from None  # ran: weights_only allows none
    return _state_dict_records(loaded, path, torch.Tensor)


# The records of a torch.save zip that torch.load reads before any tensor data.
_READ_RECORDS = ("data.pkl", ".format_version", "byteorder", ".storage_alignment", "version")


def _check_zip(reader: _CappedReader, path: Path) -> None:
    """The records torch.load reads from a zip (torch.save's format) must be uncompressed, as
    torch.save writes them: a compressed pickle could expand without bound."""
    import zipfile

    reader.seek(0)
    if reader.f.read(4) != b"PK\x03\x04":
        reader.seek(0)
        return
    try:
        with zipfile.ZipFile(reader) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        if reader.exceeded:
            raise _fail(path, f"its zip directory is over the limit of "
                        f"{MAX_TORCH_READ_BYTES:,} bytes") from None
        raise _fail(path, f"not a valid zip archive (torch.save's format): {e}",
                    "a truncated download?") from None
    for record in records:
        if record.filename.rpartition("/")[2] not in _READ_RECORDS:
            continue  # storages (never read on meta), TorchScript code (refused by torch)
        if record.compress_type != zipfile.ZIP_STORED:
            raise _fail(path, f"its record {shown(record.filename)} is compressed; torch.save "
                        "stores records uncompressed", "re-save it with torch.save")
        if record.filename.endswith("data.pkl") and record.file_size > MAX_TORCH_READ_BYTES:
            raise _fail(path, f"its pickle is {record.file_size:,} bytes, over the limit of "
                        f"{MAX_TORCH_READ_BYTES:,}")
    reader.seek(0)


_GLOBAL = re.compile(r"GLOBAL (\S+)")


def _torch_error(path: Path, e: Exception, reader: _CappedReader) -> CheckpointError:
    """Why torch could not read a file: refused (it names code to run: LS309), or unreadable."""
    if reader.exceeded:
        return _fail(path, f"torch would read more than {MAX_TORCH_READ_BYTES:,} bytes of it "
                     "before any tensor data (limit)")
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    named = _GLOBAL.search(text)
    refusal = None
    if named:
        refusal = f"its pickle calls {named.group(1).rstrip('.,')}"
    elif "TorchScript" in text:
        refusal = "it is a TorchScript archive"
    elif ".tar format" in text:
        refusal = "it is in torch's legacy .tar format"
    if refusal is not None:
        return _fail(path, f"{refusal}, which only torch.load(weights_only=False) would run; "
                     "lazyspec never loads a file that way (it can run any code)",
                     "save the state dict alone: torch.save(model.state_dict(), PATH), or "
                     "as safetensors", code="LS309")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in lines if "WeightsUnpickler error" in line), None) or \
        (lines[-1] if type(e).__name__ == "UnpicklingError" and lines else
         lines[0] if lines else "")
    return _fail(path, f"torch cannot read it: {type(e).__name__}: {reason[:200]}",
                 "a truncated download, or not a torch.save file?")


def _state_dict_records(loaded: Any, path: Path, tensor: type) -> _FileRead:
    """The records of a loaded state dict (or of one held under a well-known key)."""
    def is_state(x: Any) -> bool:
        return isinstance(x, Mapping) and all(isinstance(k, str) and isinstance(v, tensor)
                                              for k, v in x.items())

    notes = []
    state = loaded
    if not is_state(loaded):
        inner = [k for k in WRAPPER_KEYS if isinstance(loaded, Mapping)
                 and is_state(loaded.get(k))]
        if not inner:
            raise _fail(path, f"holds {_describe(loaded, tensor)}, not a state dict (names -> "
                        "tensors)",
                        "save model.state_dict(); a training checkpoint may hold it under "
                        "'" + "', '".join(WRAPPER_KEYS) + "'")
        state = loaded[inner[0]]
        notes.append(f"{path}: the state dict under {shown(inner[0])} (the file holds "
                     f"{len(loaded)} entries)")
    records = [TensorRecord(name, tuple(int(d) for d in t.shape),
                            str(t.dtype).removeprefix("torch."), str(path))
               for name, t in state.items()]
    return _FileRead("pytorch", records, notes)


def _describe(value: Any, tensor: type) -> str:
    """What a file holds instead of a state dict, for the message."""
    if isinstance(value, Mapping):
        bad = next(((k, v) for k, v in value.items()
                    if not isinstance(k, str) or not isinstance(v, tensor)), None)
        if bad is not None:
            return f"a mapping whose entry {shown(bad[0])} is a {type(bad[1]).__name__}"
    return f"a {type(value).__name__}"
