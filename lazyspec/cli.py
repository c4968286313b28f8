"""The command line: parse -> run -> report -> exit code. The only place that prints or exits.

torch is imported inside the commands that need it, so `--help` and `--version` stay fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from lazyspec import __version__
from lazyspec.errors import Diagnostic, DryRunError, LazyspecError, usage_error

app = typer.Typer(
    name="lazyspec",
    help="Compile YAML model specs into lazy PyTorch networks and infer every parameter's shape.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_OK, EXIT_FINDING, EXIT_TOOL = 0, 1, 2


@dataclass
class Session:
    """Per-run output settings, shared by the commands."""

    traceback: bool = False


SESSION = Session()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lazyspec {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    show_traceback: Annotated[bool, typer.Option("--traceback",
                                                 help="Show Python tracebacks of internal "
                                                 "errors.")] = False,
) -> None:
    SESSION.traceback = show_traceback


# --- options shared by commands -------------------------------------------------------------

InputOpt = Annotated[list[str] | None, typer.Option(
    "--input", "-i", help="Input shape [NAME=]D1,D2,...[:DTYPE]; repeat for several inputs.")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="Where the dry run happens: meta (allocates nothing), cpu, cuda, cuda:N.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Parameter dtype (for sizes in bytes).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a param: KEY=VALUE (VALUE is read as YAML: 256, [1, 2], true).",
)]
ScaleOpt = Annotated[str | None, typer.Option("--scale", help="Pick a named set of params.")]
AllowOpt = Annotated[list[str] | None, typer.Option(
    "--allow", help="Allow layers from an installed package (never granted by a spec).")]
DepthOpt = Annotated[int | None, typer.Option(
    "--depth", min=1, help="Show nodes nested at most this deep (default: all).")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output: table or json.")]


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise usage_error(f"--set '{item}' is not KEY=VALUE", "for example --set d=256")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if not _plain(value):
            raise usage_error(f"--set {key}: value '{raw}' is not a number, string, boolean "
                              "or list")
        out[key] = value
    return out


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (int, float, str, bool))


def check_device(device: str) -> str:
    """meta, cpu, cuda or cuda:N, and available here (exit 2 otherwise)."""
    import re

    device = device.strip().lower()
    if not re.fullmatch(r"meta|cpu|cuda(:\d+)?", device):
        raise usage_error(f"unknown device '{device}'", "use meta, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise usage_error(f"device '{device}' is not available: torch sees no CUDA device",
                              "use --device meta (the default) or cpu", code="LS302")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise usage_error(f"device '{device}' is not available: "
                              f"{torch.cuda.device_count()} CUDA device(s)", code="LS302")
    return device


# --- commands -------------------------------------------------------------------------------


@app.command()
def infer(
    spec: Annotated[Path, typer.Argument(help="The YAML model spec.")],
    input: InputOpt = None,
    device: DeviceOpt = "meta",
    dtype: DtypeOpt = "float32",
    set_: SetOpt = None,
    scale: ScaleOpt = None,
    allow: AllowOpt = None,
    depth: DepthOpt = None,
    format: FormatOpt = "table",
) -> None:
    """Compile SPEC, dry-run it with the input shape, and print the inferred shapes."""
    from lazyspec.inputs import canonical_dtype, parse_input

    if format not in ("table", "json"):
        raise usage_error(f"unknown format '{format}'", "use table or json")
    inputs = [parse_input(i) for i in input or []]
    param_dtype = canonical_dtype(dtype)
    overrides = parse_sets(set_)
    device = check_device(device)

    from lazyspec import dryrun
    from lazyspec.compile import BuildOptions, build
    from lazyspec.spec.parse import parse_file

    parsed = parse_file(spec)
    _sources.update(parsed.sources)
    options = BuildOptions(device=device, dtype=param_dtype, allow=tuple(allow or ()),
                           overrides=overrides, scale=scale)
    built = build(parsed, options)
    result = dryrun.run(built, inputs)
    if format == "json":
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    from lazyspec.report.table import print_table

    print_table(result, _console(), depth)


# --- running --------------------------------------------------------------------------------

_sources: dict[str, str] = {}


def _console() -> Any:
    from rich.console import Console

    return Console(no_color=bool(os.environ.get("NO_COLOR")), highlight=False, soft_wrap=False)


def _report(err: LazyspecError) -> int:
    from lazyspec.report.diagnostics import render_all, source_reader

    ran = err.ran if isinstance(err, DryRunError) else None
    sys.stderr.write(render_all(err.diagnostics, source_reader(_sources), ran) + "\n")
    return err.exit_code


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: every failure becomes a message and an exit code, never a bare traceback."""
    try:
        app(args=argv, prog_name="lazyspec", standalone_mode=False)
        code = EXIT_OK
    except LazyspecError as e:
        code = _report(e)
    except typer.Exit as e:
        code = e.exit_code
    except _click_exception() as e:  # bad flags and arguments
        e.show()  # type: ignore[attr-defined]
        code = EXIT_TOOL
    except KeyboardInterrupt:
        sys.stderr.write("lazyspec: interrupted\n")
        code = 130
    except Exception as e:  # lazyspec's own bug: say so, exit 2, never 1
        if SESSION.traceback:
            traceback.print_exc()
        code = _report_internal(e)
    sys.stdout.flush()
    raise SystemExit(code)


def _report_internal(e: BaseException) -> int:
    from lazyspec.report.diagnostics import render

    d = Diagnostic("LS303", f"internal error: {type(e).__name__}: {e}",
                   hint="this is a bug in lazyspec; rerun with --traceback and report it")
    sys.stderr.write(render(d, lambda _: None) + "\n")
    return EXIT_TOOL


def _click_exception() -> tuple[type[Exception], ...]:
    """Click's usage errors; newer typer releases carry their own copy of click."""
    import importlib

    types = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        with contextlib.suppress(ImportError, AttributeError):
            types.append(importlib.import_module(name).ClickException)
    return tuple(types)
