"""The specs that ship with lazyspec, run by name: `lazyspec infer resnet18 --input 2,3,224,224`.

The repository's `specs/` folder is their source; the wheel carries a copy in
`lazyspec/bundled_specs/` (setup.py's build step copies it). From a source checkout (an
editable install, PYTHONPATH) they are read from `specs/` itself. A file path always wins over
a name: `infer mlp` reads `./mlp` when there is such a file. Torch-free.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from lazyspec.errors import usage_error
from lazyspec.fileio import resolved


@dataclass(frozen=True)
class Example:
    """A bundled spec: its name, inputs that run it (`--input` values, one per flag) and the
    parameters it has then (tests check them against the repository's lazyspec.lock)."""

    name: str
    inputs: tuple[str, ...]
    params: int


EXAMPLES = (
    Example("mlp", ("2,20",), 7_946),
    Example("mlp_fixed", ("2,20",), 7_946),
    Example("lenet", ("1,1,28,28",), 61_706),
    Example("two_input", ("a=4,32", "b=4,32"), 10_466),
    Example("unet", ("1,3,64,64",), 482_754),
    Example("resnet18", ("2,3,224,224",), 11_689_512),
    Example("gpt2", ("2,64:int64",), 124_439_808),
    Example("synthetic-1000", ("2,64",), 4_224_000),
    Example("llama2-7b", ("2,64:int64",), 6_738_415_616),
    Example("llama2-70b", ("2,64:int64",), 68_976_648_192),
    Example("vit_b_16", ("1,3,224,224",), 86_567_656),
    Example("convnext_tiny", ("1,3,224,224",), 28_589_128),
    Example("swin_t", ("1,3,224,224",), 28_288_354),
    Example("t5_small", ("input_ids=2,16:int64", "decoder_input_ids=2,8:int64"), 60_506_624),
)
BY_NAME = {e.name: e for e in EXAMPLES}


def folder() -> Path:
    """Where the bundled specs are: in the package, else a source checkout's `specs/`."""
    here = resolved(__file__).parent
    bundled = here / "bundled_specs"
    return bundled if bundled.is_dir() else here.parent / "specs"


def path_of(example: Example) -> Path:
    path = folder() / f"{example.name}.yaml"
    if not path.is_file():
        raise usage_error(f"the bundled spec '{example.name}' is missing from this installation "
                          f"({path})", "reinstall lazyspec")
    return path


def title(example: Example) -> str:
    """The spec's `name:`, read without parsing the whole spec."""
    text = path_of(example).read_text(encoding="utf-8")
    found = re.search(r"^name:[ \t]*(.+?)[ \t]*$", text, re.MULTILINE)
    return found.group(1).strip("'\"") if found else example.name


def resolve(spec: Path) -> Path:
    """The spec a command reads: `spec` when that file exists or it is a path (it has a folder);
    else the bundled spec of that name (`resnet18` or `resnet18.yaml`). A name close to a
    bundled one gets a did-you-mean; anything else is left for the reader to report missing."""
    text = str(spec)
    if spec.exists() or len(spec.parts) != 1 or text in (".", ".."):
        return spec
    name = text.removesuffix(".yaml")
    if name in BY_NAME:
        return path_of(BY_NAME[name])
    close = difflib.get_close_matches(name, list(BY_NAME), n=3, cutoff=0.6)
    if close:
        raise usage_error(f"no spec file '{text}', and no bundled spec of that name",
                          f"did you mean {' or '.join(close)}? (`lazyspec examples` lists them)")
    return spec
