"""Diagnostics as text: `path:line:col: error[CODE]: message`, the source line, a caret, notes."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from lazyspec.errors import Diagnostic

SourceLines = Callable[[str], list[str] | None]
SOURCE_LIMIT = 16_000_000  # a file larger than this is not shown (as large as a lock may be)


def source_reader(known: Mapping[str, str] | None = None) -> SourceLines:
    """Lines of a spec file: from texts already read, else from disk (None when unreadable)."""
    cache: dict[str, list[str] | None] = {p: t.splitlines() for p, t in (known or {}).items()}

    def lines(path: str) -> list[str] | None:
        if path not in cache:
            from pathlib import Path

            from lazyspec.fileio import read_capped

            try:  # a lock file or pyproject.toml can be large, or a link to /dev/zero
                cache[path] = read_capped(Path(path), SOURCE_LIMIT).decode("utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                cache[path] = None
        return cache[path]

    return lines


def one_line(text: str) -> str:
    """Spec-controlled text on one line: a newline in a YAML key must not start a line of its
    own (CI runners read lines such as `::error ...` on stderr as commands)."""
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)


def render(d: Diagnostic, lines: SourceLines, ran: list[str] | None = None) -> str:
    loc = d.location
    head = f"{one_line(str(loc))}: " if loc else "lazyspec: "
    out = [f"{head}{d.severity}[{d.code}]: {one_line(d.message)}"]
    text = lines(loc.path) if loc else None
    if loc and text and 0 < loc.line <= len(text):
        src = text[loc.line - 1].rstrip("\n").expandtabs(1)
        number = str(loc.line)
        pad = " " * len(number)
        out.append(f" {number} | {src}")
        out.append(f" {pad} | {' ' * (loc.col - 1)}^")
    out += [f"  {one_line(n)}" for n in d.notes]
    if len(d.trail) > 1:
        out.append(f"  in: {one_line(' > '.join(d.trail))}")
    if ran is not None:
        out.append("  ran before it: " + _ran(ran))
    if d.hint:
        out.append(f"  hint: {one_line(d.hint)}")
    return "\n".join(out)


def _ran(ran: list[str], shown: int = 8) -> str:
    if not ran:
        return "(nothing: it was the first node)"
    if len(ran) <= shown:
        return ", ".join(ran)
    return f"{len(ran)} nodes, the last: " + ", ".join(ran[-shown:])


def render_all(diagnostics: list[Diagnostic], lines: SourceLines,
               ran: list[str] | None = None) -> str:
    ordered = sorted(diagnostics, key=lambda d: (d.location is not None, d.location or ""))
    blocks = [render(d, lines, ran) for d in ordered]
    errors = sum(1 for d in diagnostics if d.severity == "error")
    if errors > 1:
        blocks.append(f"{errors} errors")
    return "\n\n".join(blocks)
