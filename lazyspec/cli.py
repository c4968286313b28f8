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
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import typer

from lazyspec import __version__
from lazyspec.errors import Diagnostic, DryRunError, LazyspecError, usage_error
from lazyspec.export import TARGETS, init_choices
from lazyspec.report import FORMATS, GRAPH_FORMATS

if TYPE_CHECKING:
    from lazyspec.engine import Outcome

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
ShowOpt = Annotated[str, typer.Option(
    "--show", metavar="[auto|nodes|params|both]", help="Tables to show (table, markdown): "
    "nodes, parameter tensors, or both; auto adds the parameters when there are 16 or fewer.")]
ColumnsOpt = Annotated[str | None, typer.Option(
    "--columns", metavar="LIST", help="Node-table columns, comma-separated, from op, input, "
    "output, weight (or kernel), params, percent, flops, macs, trainable, line "
    "(default: op,output,params,flops).")]
ExpandOpt = Annotated[bool, typer.Option(
    "--expand", help="List every copy of a repeated block and every block built like an "
    "earlier one (default: shown once).")]


def _choices(names: tuple[str, ...]) -> str:
    return "[" + "|".join(names) + "]"


FormatOpt = Annotated[str, typer.Option(
    "--format", "-f", metavar=_choices(FORMATS), help="The report's format.")]
OutputFileOpt = Annotated[Path | None, typer.Option(
    "--output-file", "-o", help="Write the report to this file instead of stdout.")]
ExpectOpt = Annotated[str | None, typer.Option(
    "--expect-output", help="Fail (exit 1) unless the output shape is this, e.g. 2,10.")]
MaxParamsOpt = Annotated[str | None, typer.Option(
    "--max-params", help="Fail (exit 1) above this many parameters: 10K, 1M, 1.5B.")]
MaxBytesOpt = Annotated[str | None, typer.Option(
    "--max-bytes", help="Fail (exit 1) above this many parameter bytes: 500MB, 2GiB.")]
PathsArg = Annotated[list[Path] | None, typer.Argument(
    help="Spec files or folders (default: `specs` under [tool.lazyspec]).")]
LockOpt = Annotated[Path | None, typer.Option(
    "--lock", help="The lock file (default: `lock` under [tool.lazyspec], else lazyspec.lock).")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="The pyproject.toml to read (default: the nearest one).")]
MaxOpTensorsOpt = Annotated[int | None, typer.Option(
    "--max-op-tensors", min=1, help="Most modules and tensors one op may create while it is "
    "built (default 10,000; past it: LS126).")]


WatchOpt = Annotated[bool, typer.Option(
    "--watch", help="Keep running: run again whenever the spec or a file it includes changes "
    "(Ctrl-C to stop).")]
JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", min=1, help="Worker processes for the runs (default: $LAZYSPEC_JOBS, else "
    "the number of cores); output and exit code are those of -j 1.")]


def _limits(max_op_tensors: int | None) -> dict[str, Any]:
    """BuildOptions' limits that the flags set (the defaults live with the build, in torch)."""
    return {} if max_op_tensors is None else {"max_op_tensors": max_op_tensors}


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    from lazyspec.errors import SpecError
    from lazyspec.options import is_plain_value
    from lazyspec.spec.yamlload import load_yaml, plain

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise usage_error(f"--set '{item}' is not KEY=VALUE", "for example --set d=256")
        # The spec's own strict reader: no aliases (`&a [*a]` is a list that holds itself),
        # no tags, bounded nesting. A value that is not YAML at all is taken as a string.
        try:
            value = plain(load_yaml(raw, f"--set {key}")) if raw.strip() else ""
        except SpecError as e:
            first = e.diagnostics[0]
            if first.code == "LS126":  # a number past the limits
                raise usage_error(f"--set {key}: {first.message}", first.hint) from None
            if first.code != "LS101":
                raise usage_error(f"--set {key}: the value is not plain YAML data "
                                  f"({first.message})", first.hint) from None
            value = raw
        if not is_plain_value(value):
            raise usage_error(f"--set {key}: value '{raw}' is not a number, string, boolean "
                              "or list")
        out[key] = value
    return out


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """Where and how a report goes."""

    format: str
    file: Path | None
    depth: int | None = None
    view: Any = None  # report.view.View: what table and markdown show (infer)

    @property
    def color(self) -> bool:
        return (self.format == "table" and self.file is None and sys.stdout.isatty()
                and not os.environ.get("NO_COLOR"))

    def reporter(self) -> Any:
        from lazyspec.report import reporter

        if self.format not in FORMATS:
            raise usage_error(f"unknown format '{self.format}'", "use " + ", ".join(FORMATS))
        if self.format != "table":
            from lazyspec import progress

            progress.quiet()  # machine formats: stderr carries diagnostics only
        width = None if self.file else _terminal_width()
        return reporter(self.format, color=self.color, width=width, depth=self.depth,
                        view=self.view)

    def report(self, kind: str, data: Any) -> None:
        """Render `data` with this output's reporter (`kind`: infer, gate, show, weights) and write
        it; in `github` format, the Markdown report also goes to $GITHUB_STEP_SUMMARY."""
        text = getattr(self.reporter(), kind)(data)
        summary = None
        if self.format == "github":
            from lazyspec.report.markdown import MarkdownReporter

            summary = getattr(MarkdownReporter(self.view), kind)(data)
        self.emit(text, summary)

    def emit(self, text: str, summary_markdown: str | None = None) -> None:
        """Write the report. Every line is guarded (see `write`) but an export written to a
        file, which must hold exactly what the exporter wrote (and holds no raw control)."""
        from lazyspec.textsafe import guard

        if not text:
            pass  # a failed table report: the diagnostics on stderr say it all
        elif self.file is not None:
            from lazyspec.fileio import atomic_write

            if self.format != "export":
                text = guard(text, commands=self.format == "github")
            atomic_write(self.file, text, "report")
        else:
            write(sys.stdout, text, color=self.color, commands=self.format == "github")
        summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
        if self.format == "github" and summary_path and summary_markdown:
            from lazyspec.fileio import append_text

            try:
                append_text(Path(summary_path), guard(summary_markdown) + "\n")
            except OSError as e:
                raise usage_error(f"cannot append to $GITHUB_STEP_SUMMARY ({summary_path}): "
                                  f"{e.strerror or e}") from None


# Where the output's encoding cannot show them (LANG=C, PYTHONIOENCODING=ascii), box-drawing
# characters become ASCII of the same width, and anything else an escape such as \u2265.
_ASCII = str.maketrans({"─": "-", "━": "-", "═": "=", "│": "|", "┃": "|", "…": "."})


def write(stream: TextIO, text: str, *, color: bool = False, commands: bool = False) -> None:
    """Write to stdout or stderr in any encoding: never a UnicodeEncodeError, never a raw
    control character (but, with `color`, the report's colours), never a line that GitHub's
    runner would take as a workflow command (but, with `commands`, `--format github`'s own)."""
    from lazyspec import progress
    from lazyspec.textsafe import guard

    progress.quiet()  # the first thing printed ends the progress line: they would interleave
    text = guard(text, color=color, commands=commands)
    try:
        stream.write(text)
    except UnicodeEncodeError:  # the text wrapper encodes all of it before writing any
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.translate(_ASCII).encode(encoding, "backslashreplace")
                     .decode(encoding))


def _terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)


def _budgets(expect: str | None, max_params: str | None, max_bytes: str | None) -> Any:
    from lazyspec.config import Budgets, parse_bytes, parse_count, parse_shape

    return Budgets(parse_shape(expect) if expect else None,
                   parse_count(max_params) if max_params else None,
                   parse_bytes(max_bytes) if max_bytes else None)


def _config(explicit: Path | None) -> Any:
    from lazyspec.config import load_config

    if explicit is not None and not explicit.exists():  # other kinds: load_config says which
        raise usage_error(f"--config {explicit}: no such file")
    return load_config(explicit=explicit)


def _show_diagnostics(diagnostics: list[Diagnostic], ran: list[str] | None = None,
                      sources: dict[str, str] | None = None) -> None:
    """Diagnostics to stderr, each with its source line from the texts the run read."""
    if diagnostics:
        from lazyspec.report.diagnostics import render_all, source_reader

        write(sys.stderr, render_all(diagnostics, source_reader(sources), ran) + "\n")


def _spec(spec: Path) -> Path:
    """The spec file, or the bundled spec of that name (`resnet18`); a file always wins."""
    from lazyspec.examples import resolve

    return resolve(spec)


def _build_options(settings: Any, allow: list[str] | None, *, device: str = "meta",
                   dtype: str = "float32", sets: dict[str, Any] | None = None,
                   scale: str | None = None, max_op_tensors: int | None = None) -> Any:
    """BuildOptions from flags and [tool.lazyspec]: the config's allowlist, then --allow."""
    from lazyspec.options import BuildOptions

    return BuildOptions(device=device, dtype=dtype, allow=settings.allow + tuple(allow or ()),
                        overrides=sets or {}, scale=scale, **_limits(max_op_tensors))


def _run(spec: Path, options: Any, inputs: list[Any] | None = None, budgets: Any = None,
         stage: str = "run") -> Outcome:
    """One engine run; its diagnostics go to stderr."""
    from lazyspec import engine
    from lazyspec.config import Budgets

    outcome = engine.run(engine.Request(spec, inputs=tuple(inputs or ()), options=options,
                                        budgets=budgets or Budgets(), stage=stage))  # type: ignore[arg-type]
    _show_diagnostics(outcome.diagnostics, outcome.ran, outcome.sources)
    return outcome


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
    show: ShowOpt = "auto",
    columns: ColumnsOpt = None,
    expand: ExpandOpt = False,
    format: FormatOpt = "table",
    output_file: OutputFileOpt = None,
    expect_output: ExpectOpt = None,
    max_params: MaxParamsOpt = None,
    max_bytes: MaxBytesOpt = None,
    config: ConfigOpt = None,
    max_op_tensors: MaxOpTensorsOpt = None,
    watch: WatchOpt = False,
) -> None:
    """Compile SPEC, dry-run it with the input shape, and print the inferred shapes."""
    from lazyspec.inputs import param_dtype as checked_param_dtype
    from lazyspec.inputs import parse_input
    from lazyspec.options import check_device
    from lazyspec.report.view import View, parse_columns

    out = Output(format, output_file, depth, View(show, parse_columns(columns), depth, expand))
    out.reporter()  # a bad --format fails before any work
    inputs = [parse_input(i) for i in input or []]
    param_dtype = checked_param_dtype(dtype)
    overrides = parse_sets(set_)
    budgets = _budgets(expect_output, max_params, max_bytes)
    settings = _config(config)
    device = check_device(device)
    options = _build_options(settings, allow, device=device, dtype=param_dtype, sets=overrides,
                             scale=scale, max_op_tensors=max_op_tensors)
    spec = _spec(spec)

    def once() -> Outcome:
        outcome = _run(spec, options, inputs, budgets)
        out.report("infer", outcome.report())
        return outcome

    if watch:
        _watch(lambda: [*once().read], [spec])
    outcome = once()
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


@app.command()
def show(
    spec: Annotated[Path, typer.Argument(help="The YAML model spec.")],
    set_: SetOpt = None,
    scale: ScaleOpt = None,
    allow: AllowOpt = None,
    format: FormatOpt = "table",
    output_file: OutputFileOpt = None,
    config: ConfigOpt = None,
    max_op_tensors: MaxOpTensorsOpt = None,
) -> None:
    """The model before any input: parameter shapes, with ? for sizes the data will fix."""
    out = Output(format, output_file)
    out.reporter()
    overrides = parse_sets(set_)
    settings = _config(config)
    outcome = _run(_spec(spec), _build_options(settings, allow, sets=overrides, scale=scale,
                                               max_op_tensors=max_op_tensors), stage="compile")
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)

    from lazyspec.preview import preview

    assert outcome.built is not None
    out.report("show", preview(outcome.built))


@app.command()
def graph(
    spec: Annotated[Path, typer.Argument(help="The YAML model spec.")],
    input: InputOpt = None,
    format: Annotated[str, typer.Option(
        "--format", "-f", metavar=_choices(GRAPH_FORMATS),
        help="mermaid renders on GitHub; dot is Graphviz.")] = "mermaid",
    depth: DepthOpt = None,
    set_: SetOpt = None,
    scale: ScaleOpt = None,
    allow: AllowOpt = None,
    output_file: OutputFileOpt = None,
    config: ConfigOpt = None,
    max_op_tensors: MaxOpTensorsOpt = None,
) -> None:
    """The architecture as a diagram; with --input, the shapes ride on the edges."""
    from lazyspec.inputs import parse_input

    if format not in GRAPH_FORMATS:
        raise usage_error(f"unknown graph format '{format}'", "use " + " or ".join(GRAPH_FORMATS))
    inputs = [parse_input(i) for i in input or []]
    overrides = parse_sets(set_)
    settings = _config(config)

    from lazyspec.graph import diagram

    options = _build_options(settings, allow, sets=overrides, scale=scale,
                             max_op_tensors=max_op_tensors)
    outcome = diagram(_spec(spec), inputs, options)
    _show_diagnostics(outcome.diagnostics, outcome.ran, outcome.sources)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
    from lazyspec.graph import build_graph
    from lazyspec.report.graph_text import render

    assert outcome.built is not None
    Output(format, output_file).emit(render(build_graph(outcome.built, outcome.result, depth),
                                            format))


@app.command()
def export(
    spec: Annotated[Path, typer.Argument(help="The YAML model spec.")],
    input: InputOpt = None,
    to: Annotated[str, typer.Option(
        "--to", metavar=_choices(TARGETS), help="spec: explicit, no laziness; pytorch: an "
        "nn.Module class; state-dict: initialised, saved with torch.save.")] = "spec",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write (stdout for spec and pytorch if left out).",
    )] = None,
    init: Annotated[str, typer.Option(
        "--init", help=f"For state-dict: {init_choices()}.")] = "default",
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed for reproducible values.")] = None,
    device: DeviceOpt = "meta",
    dtype: DtypeOpt = "float32",
    set_: SetOpt = None,
    scale: ScaleOpt = None,
    allow: AllowOpt = None,
    config: ConfigOpt = None,
    max_op_tensors: MaxOpTensorsOpt = None,
) -> None:
    """The materialised model: an explicit spec, PyTorch code, or an initialised state dict."""
    from lazyspec.inputs import param_dtype as checked_param_dtype
    from lazyspec.inputs import parse_input
    from lazyspec.options import check_device

    if to not in TARGETS:
        raise usage_error(f"unknown export target '{to}'", "use " + ", ".join(TARGETS))
    if to == "state-dict" and output is None:
        raise usage_error("--to state-dict writes a binary file: give --output PATH")
    if seed is not None and not -(2**63) <= seed < 2**64:  # what torch.manual_seed takes
        raise usage_error("--seed is out of range", "a seed is a whole number from -2**63 to "
                          "2**64 - 1")
    inputs = [parse_input(i) for i in input or []]
    param_dtype = checked_param_dtype(dtype)
    overrides = parse_sets(set_)
    settings = _config(config)
    if to == "state-dict" and device == "meta":
        device = "cpu"  # values need a real device
    device = check_device(device)

    from lazyspec import export as exporter

    try:
        exporter.parse_init(init)  # a bad --init fails before any work
    except ValueError as e:
        raise usage_error(f"--init {init}: {e}") from None
    options = _build_options(settings, allow, device=device if to == "state-dict" else "meta",
                             dtype=param_dtype, sets=overrides, scale=scale,
                             max_op_tensors=max_op_tensors)
    outcome = _run(_spec(spec), options, inputs)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
    _write_export(outcome, to, output, init, seed)


def _write_export(outcome: Outcome, to: str, output: Path | None, init: str,
                  seed: int | None) -> None:
    from lazyspec import export as exporter

    built, result = outcome.built, outcome.result
    assert built is not None and result is not None
    try:
        if to == "state-dict":
            assert output is not None
            state = exporter.init_state_dict(built.module, init, seed)
            exporter.write_state_dict(output, state)
            write(sys.stderr, f"lazyspec: wrote {len(state)} tensors (init {init}) to {output}\n")
            return
        text = (exporter.explicit_spec(built, result) if to == "spec"
                else exporter.pytorch_code(built, result))
    except exporter.ExportError as e:
        raise usage_error(str(e), code="LS307") from None
    Output("export", output).emit(text)


StripPrefixOpt = Annotated[list[str] | None, typer.Option(
    "--strip-prefix", metavar="PREFIX", help="Remove this prefix from the checkpoint's names "
    "(Hugging Face's `transformer.`, `model.`); repeat for several, the first that matches wins.")]
AddPrefixOpt = Annotated[str | None, typer.Option(
    "--add-prefix", metavar="PREFIX", help="Then add this prefix to every checkpoint name.")]
TransposeOpt = Annotated[list[str] | None, typer.Option(
    "--transpose", metavar="GLOB", help="Keys (spec names) whose 2-d tensors the checkpoint "
    "stores transposed, [in, out] (HF GPT-2's Conv1D: '*.c_attn.weight'); repeatable.")]
IgnoreOpt = Annotated[list[str] | None, typer.Option(
    "--ignore", metavar="GLOB", help="Keys (spec names) to leave out on both sides; repeatable.")]


@app.command()
def weights(
    spec: Annotated[Path, typer.Argument(help="The YAML model spec.")],
    checkpoint: Annotated[str, typer.Argument(
        help="A .safetensors or PyTorch .pt/.bin file, a sharded checkpoint's index "
        "(model.safetensors.index.json), or a quoted glob of shards.")],
    input: InputOpt = None,
    set_: SetOpt = None,
    scale: ScaleOpt = None,
    allow: AllowOpt = None,
    strip_prefix: StripPrefixOpt = None,
    add_prefix: AddPrefixOpt = None,
    transpose: TransposeOpt = None,
    ignore: IgnoreOpt = None,
    format: FormatOpt = "table",
    output_file: OutputFileOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Does CHECKPOINT fit SPEC? Compares the spec's state dict with the checkpoint's tensors,
    read from its header alone, as load_state_dict(strict=True) would: exit 0 fits, 1 does not,
    2 the file cannot be read."""
    from lazyspec.inputs import parse_input

    out = Output(format, output_file)
    out.reporter()
    inputs = [parse_input(i) for i in input or []]
    overrides = parse_sets(set_)
    layout = _layout(strip_prefix, add_prefix, transpose, ignore)
    settings = _config(config)

    from lazyspec import engine
    from lazyspec.checkpoint import read_checkpoint
    from lazyspec.weights import check

    stored = read_checkpoint(checkpoint)  # an unreadable file fails before the dry run
    options = _build_options(settings, allow, sets=overrides, scale=scale)
    # Parameter shapes need only the concrete pass: named input dims take their hint sizes.
    outcome = engine.run(engine.Request(_spec(spec), inputs=tuple(inputs), options=options,
                                        symbolic=False))
    _show_diagnostics(outcome.diagnostics, outcome.ran, outcome.sources)
    report = check(outcome, stored, layout)
    out.report("weights", report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _layout(strip: list[str] | None, add: str | None, transpose: list[str] | None,
            ignore: list[str] | None) -> Any:
    from lazyspec.weights import Layout

    for flag, values in (("--strip-prefix", strip), ("--add-prefix", [add] if add is not None
                                                     else []),
                         ("--transpose", transpose), ("--ignore", ignore)):
        if any(not v for v in values or []):
            raise usage_error(f"{flag} needs a non-empty value")
    return Layout(tuple(strip or ()), add or "", tuple(transpose or ()), tuple(ignore or ()))


@app.command()
def schema() -> None:
    """Print the JSON Schema (2020-12) of the spec language, for editors. Fast: no torch."""
    from lazyspec.spec.schema import schema_json

    write(sys.stdout, schema_json())


@app.command()
def lsp() -> None:
    """Run the language server over stdin and stdout, for editors: diagnostics as you type,
    output shapes as inlay hints, hover, go to definition, completion."""
    try:
        from lazyspec.lsp.server import serve
    except ModuleNotFoundError as e:  # a dependency removed after installing lazyspec
        raise usage_error(f"lazyspec lsp needs the package '{e.name}'",
                          "pip install pygls") from None
    raise typer.Exit(serve())


def _gate(paths: list[Path] | None, update: bool, lock: Path | None, input: list[str] | None,
          device: str, dtype: str, set_: list[str] | None, scale: str | None,
          allow: list[str] | None, out: Output, budgets: Any, config: Path | None, *,
          force: bool = False, max_op_tensors: int | None = None, jobs: int | None = None,
          watch: bool = False) -> None:
    from lazyspec.inputs import param_dtype as checked_param_dtype
    from lazyspec.inputs import parse_input
    from lazyspec.options import check_device
    from lazyspec.parallel import Pool, jobs_from

    if watch and update:
        raise usage_error("--watch cannot be combined with --update",
                          "watch with `check --watch`; write the lock with `lazyspec lock`")
    workers = jobs_from(jobs)

    out.reporter()
    for i in input or []:
        parse_input(i)  # reject bad flags before any work
    param_dtype = checked_param_dtype(dtype)
    sets = parse_sets(set_)
    settings = _config(config)
    device = check_device(device)

    from lazyspec import gate

    options = gate.GateOptions(device=device, dtype=param_dtype, allow=tuple(allow or ()),
                               inputs=tuple(input or ()), scale=scale,
                               sets=tuple(sorted(sets.items())), budgets=budgets,
                               max_op_tensors=max_op_tensors)

    def once(settings: Any, pool: Pool | None = None) -> Any:
        result = gate.run_all(list(paths or []), settings, options, update=update,
                              lock_path=lock or settings.lock, force=force, jobs=workers,
                              pool=pool)
        for o in result.outcomes:
            _show_diagnostics(o.diagnostics, o.ran, o.sources)
        out.report("gate", result)
        return result

    if watch:  # the config is read again on each run; the workers stay warm across runs
        with Pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
            _watch_gate(lambda: once(_config(config), pool), paths, lock, config)
    result = once(settings)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _watch_gate(once: Any, paths: list[Path] | None, lock: Path | None,
                config: Path | None) -> NoReturn:
    """`check --watch`: the specs each run read, the lock, pyproject.toml and, for a folder
    named (or `specs` under [tool.lazyspec]), any spec file added in it."""
    from lazyspec.config import find_pyproject

    settings = _config(config)
    named = list(paths or []) or settings.specs
    pyproject = config or find_pyproject(Path.cwd())
    base = [p for p in [*named, lock or settings.lock, pyproject] if p is not None]

    def read() -> list[Path | str]:
        result = once()
        return [*(f for o in result.outcomes for f in [o.spec, *o.read])]

    _watch(read, [p for p in base if not p.is_dir()], [p for p in named if p.is_dir()])


def _watch(once: Any, files: list[Path], trees: list[Path] | None = None) -> NoReturn:
    """Run `once` (which returns the files it read) now and after every change, until Ctrl-C:
    its errors are shown and watching goes on."""
    from lazyspec import watch

    def on_error(e: Exception) -> None:
        if isinstance(e, LazyspecError):
            _report(e)
        else:
            if SESSION.traceback:
                write(sys.stderr, traceback.format_exc())
            _report_internal(e)

    screen = watch.Screen(sys.stdout, sys.stderr, write)
    watch.run(lambda: watch.Watched.of(once()), watch.Watched.of(files, trees or []), screen,
              on_error)
    raise AssertionError("watching ends only with Ctrl-C")  # pragma: no cover


@app.command()
def check(
    paths: PathsArg = None,
    update: Annotated[bool, typer.Option("--update", help="Rewrite the lock file.")] = False,
    lock: LockOpt = None,
    input: InputOpt = None,
    device: DeviceOpt = "meta",
    dtype: DtypeOpt = "float32",
    set_: SetOpt = None,
    scale: ScaleOpt = None,
    allow: AllowOpt = None,
    format: FormatOpt = "table",
    output_file: OutputFileOpt = None,
    expect_output: ExpectOpt = None,
    max_params: MaxParamsOpt = None,
    max_bytes: MaxBytesOpt = None,
    config: ConfigOpt = None,
    max_op_tensors: MaxOpTensorsOpt = None,
    jobs: JobsOpt = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Keep running: check again whenever a spec, a file it includes, the "
        "lock or pyproject.toml changes (Ctrl-C to stop).")] = False,
) -> None:
    """Check specs against the lock file and budgets (the CI gate). Writes nothing but with
    --update."""
    _gate(paths, update, lock, input, device, dtype, set_, scale, allow,
          Output(format, output_file), _budgets(expect_output, max_params, max_bytes), config,
          max_op_tensors=max_op_tensors, jobs=jobs, watch=watch)


@app.command("lock")
def lock_(
    paths: PathsArg = None,
    lock: LockOpt = None,
    input: InputOpt = None,
    device: DeviceOpt = "meta",
    dtype: DtypeOpt = "float32",
    set_: SetOpt = None,
    scale: ScaleOpt = None,
    allow: AllowOpt = None,
    format: FormatOpt = "table",
    output_file: OutputFileOpt = None,
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the lock file even when it cannot be read (a damaged lock, a "
        "merge conflict, another file): entries of specs not in this run are dropped.")] = False,
    max_op_tensors: MaxOpTensorsOpt = None,
    jobs: JobsOpt = None,
) -> None:
    """Write or refresh the lock file (atomically) from dry runs of the specs."""
    from lazyspec.config import Budgets

    _gate(paths, True, lock, input, device, dtype, set_, scale, allow,
          Output(format, output_file), Budgets(), config, force=force,
          max_op_tensors=max_op_tensors, jobs=jobs)


@app.command()
def examples() -> None:
    """List the specs that ship with lazyspec; run one by name: lazyspec infer resnet18 ..."""
    from lazyspec.examples import EXAMPLES, title
    from lazyspec.report.layout import Col, lay_out

    rows = [(e.name, title(e), " ".join(e.inputs), f"{e.params:,}") for e in EXAMPLES]
    laid = lay_out([Col("Name"), Col("Model", drop=1), Col("--input"),
                    Col("Parameters", True, 2)], rows, _terminal_width())
    first = EXAMPLES[0]
    write(sys.stdout, "\n".join([laid.heading, laid.rule, *laid.rows, "",
                                 f"run one: lazyspec infer {first.name} "
                                 f"{' '.join(f'--input {i}' for i in first.inputs)}  "
                                 "(a file of that name wins)"]) + "\n")


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="The project's folder.")] = Path("."),
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the starter spec, the workflow and .pre-commit-config.yaml "
        "when they exist (pyproject.toml is only ever added to).")] = False,
) -> None:
    """Set up a project: specs/model.yaml, [tool.lazyspec] in pyproject.toml, a pre-commit hook
    and .github/workflows/lazyspec.yml. Existing files are kept unless --force."""
    from lazyspec.scaffold import init as scaffold

    if not folder.is_dir():
        raise usage_error(f"{folder}: no such folder")
    try:
        steps = scaffold(folder, force=force)
    except OSError as e:
        raise usage_error(f"cannot write in {folder}: {e.strerror or e}") from None
    lines = [f"{s.action:>8}  {s.path}" + (f": {s.detail}" if s.detail else "") for s in steps]
    lines += ["", "next: lazyspec infer specs/model.yaml --input 2,20, then lazyspec lock"]
    write(sys.stdout, "\n".join(lines) + "\n")
    if any(s.action == "refused" for s in steps):
        raise typer.Exit(EXIT_TOOL)


# --- import: specs from things that exist --------------------------------------------------

import_app = typer.Typer(
    help="Write a spec from something that exists: a Python module, a Hugging Face config.",
    no_args_is_help=True, rich_markup_mode=None)
app.add_typer(import_app, name="import")


@import_app.command("module")
def import_module(
    target: Annotated[str, typer.Argument(
        metavar="PKG.MODULE:FACTORY", help="Where the model comes from: a function or class "
        "in an importable module that returns an nn.Module.")],
    args: Annotated[str | None, typer.Option(
        "--args", help="The factory's arguments as JSON: an object for keyword arguments, a "
        "list for positional ones.")] = None,
    input: InputOpt = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the spec here (atomically) instead of to stdout.")] = None,
) -> None:
    """Write a spec that rebuilds the module PKG.MODULE:FACTORY returns: its layers, blocks and
    parameter names. This IMPORTS AND RUNS YOUR CODE (PKG.MODULE, the factory, its forward
    under torch.fx), like --allow, and only on this command; the current folder is searched
    first, as `python -m` does. Nothing is written unless lazyspec reads the spec back with the
    same state-dict names and shapes and, on the CPU, the same outputs."""
    from lazyspec.inputs import parse_input

    inputs = [parse_input(i) for i in input or []]
    if not inputs:
        raise usage_error("give the model's input shapes with --input",
                          "for example --input 2,3,224,224 or --input 2,64:int64")
    from lazyspec.fileio import write_target

    if output is not None:
        write_target(output, "spec")  # a folder or socket fails before any work
    from lazyspec.importers import module as importer

    importer.check_target(target)
    positional, keywords = importer.parse_args(args)
    spec_path = str(output) if output is not None else "imported.yaml"
    # What the user's code prints goes to stderr: stdout holds the spec and nothing else.
    with contextlib.redirect_stdout(sys.stderr):
        model = importer.load_module(target, positional, keywords)
        imported = importer.import_module(model, inputs, spec_path,
                                          source=_shown_source(target, args))
    Output("export", output).emit(imported.text)
    where = f"wrote {output}" if output is not None else "spec written to stdout"
    write(sys.stderr, f"lazyspec: {where}: {imported.params:,} parameters; checked: "
          f"{imported.checked}\n" + "".join(f"note: {n}\n" for n in imported.notes))


def _shown_source(target: str, args: str | None) -> str:
    """The command as the spec's header shows it: on one line, --args cut short."""
    if args is None:
        return target
    compact = " ".join(args.split())
    return f"{target} --args '{compact[:120]}{'...' if len(compact) > 120 else ''}'"


@import_app.command("hf")
def import_hf(
    config: Annotated[Path, typer.Argument(
        help="A Hugging Face config.json, or the folder of a downloaded model that holds one.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the spec (stdout if left out).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="The spec's name (default: the class and the config's folder).")] = None,
) -> None:
    """A spec with Hugging Face's parameter names and the config's sizes (model_type llama,
    mistral, qwen2, gpt2, bert, t5, vit), checked by a dry run before it is written. A config
    lazyspec cannot write faithfully (an unknown model_type, MoE, scaled rotary embeddings) is
    exit 2, naming the field."""
    from lazyspec.importers import hf

    imported = hf.import_config(config, name)
    outcome = hf.check(imported, output or Path(f"{imported.family.model_type}.yaml"))
    _show_diagnostics(outcome.diagnostics, outcome.ran, outcome.sources)
    if outcome.exit_code or outcome.result is None:
        raise usage_error(f"the spec written from {imported.config} does not pass lazyspec's own "
                          "check (above); nothing was written",
                          "this is a bug in lazyspec's template for model_type "
                          f"'{imported.family.model_type}' or a config whose sizes do not fit "
                          "together", code="LS310")
    if output is None:
        write(sys.stdout, imported.text)
    else:
        from lazyspec.fileio import atomic_write

        atomic_write(output, imported.text, "spec")
        write(sys.stderr, f"lazyspec: wrote {output}: {imported.family.cls}, "
              f"{outcome.result.totals.params:,} parameters\n")


# --- running --------------------------------------------------------------------------------


def _report(err: LazyspecError) -> int:
    _show_diagnostics(err.diagnostics, err.ran if isinstance(err, DryRunError) else None)
    return err.exit_code


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: every failure becomes a message and an exit code, never a bare traceback."""
    from lazyspec import progress

    args = sys.argv[1:] if argv is None else argv
    try:
        # Outside standalone mode click returns the code of a typer.Exit instead of raising it.
        with progress.session(sys.stderr, "lazyspec " + " ".join(args[:2]),
                              enabled=_progress_wanted()):
            returned = app(args=argv, prog_name="lazyspec", standalone_mode=False)
        code = returned if isinstance(returned, int) else EXIT_OK
    except LazyspecError as e:
        code = _report(e)
    except typer.Exit as e:
        code = e.exit_code
    except _click_exception() as e:  # bad flags and arguments
        e.show()  # type: ignore[attr-defined]  # (it escapes the flags it quotes)
        code = EXIT_TOOL
    except KeyboardInterrupt:
        sys.stderr.write("lazyspec: interrupted\n")
        code = 130
    except Exception as e:  # lazyspec's own bug: say so, exit 2, never 1
        if SESSION.traceback:
            write(sys.stderr, traceback.format_exc())
        code = _report_internal(e)
    sys.stdout.flush()
    raise SystemExit(code)


def _progress_wanted() -> bool:
    """A progress line only for a person watching: stderr is a terminal, not a dumb one."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def _report_internal(e: BaseException) -> int:
    from lazyspec.report.diagnostics import render

    d = Diagnostic("LS303", f"internal error: {type(e).__name__}: {e}",
                   hint="this is a bug in lazyspec; rerun with --traceback and report it")
    write(sys.stderr, render(d, lambda _: None) + "\n")
    return EXIT_TOOL


def _click_exception() -> tuple[type[Exception], ...]:
    """Click's usage errors; newer typer releases carry their own copy of click."""
    import importlib

    types = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        with contextlib.suppress(ImportError, AttributeError):
            types.append(importlib.import_module(name).ClickException)
    return tuple(types)
