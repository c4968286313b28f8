"""Diagnostics as text: `path:line:col: error[CODE]: message`, the source line, a caret, notes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from lazyspec.errors import Diagnostic
from lazyspec.textsafe import source_lines, visible

SourceLines = Callable[[str], list[str] | None]
SOURCE_LIMIT = 16_000_000  # a file larger than this is not shown (as large as a lock may be)

QUOTE_WIDTH = 160  # a quoted source line is cut to about this many characters around the caret


def source_reader(known: Mapping[str, str] | None = None) -> SourceLines:
    """Lines of a spec file: from texts already read, else from disk. None when unreadable, and
    for a binary file (NUL bytes): its content is never quoted."""
    cache: dict[str, list[str] | None] = {p: _text_lines(t) for p, t in (known or {}).items()}

    def lines(path: str) -> list[str] | None:
        if path not in cache:
            from pathlib import Path

            from lazyspec.fileio import read_capped

            try:  # a lock file or pyproject.toml can be large, or a link to /dev/zero
                cache[path] = _text_lines(read_capped(Path(path), SOURCE_LIMIT).decode("utf-8"))
            except (OSError, UnicodeDecodeError):
                cache[path] = None
        return cache[path]

    return lines


def _text_lines(text: str) -> list[str] | None:
    return None if "\0" in text else source_lines(text)


def one_line(text: str) -> str:
    """Spec-controlled text on one line, every control character shown as an escape: a newline
    in a YAML key must not start a line of its own (CI runners read lines such as `::error ...`
    as commands), an ESC must not reach the terminal."""
    return visible(text)


def quoted(line: str, col: int, width: int = QUOTE_WIDTH) -> tuple[str, int]:
    """A source line as a diagnostic shows it, and where the caret goes under it: escaped (see
    `one_line`) and, when long, cut to about `width` characters around column `col`."""
    if len(line) > 4 * width:  # only a window around the caret is read: escaping a whole
        # 1 MB line for each of its diagnostics took minutes
        start = max(0, min(col - 1, len(line)) - 2 * width)
        text, caret = quoted(line[start:start + 4 * width], col - start, width)
        if start and not text.startswith("..."):
            text, caret = "..." + text, caret + 3
        if start + 4 * width < len(line) and not text.endswith("..."):
            text += "..."
        return text, caret
    line = line.expandtabs(1)  # a tab is one column, as in YAML's positions
    at = min(max(col - 1, 0), len(line))
    beyond = max(col - 1 - len(line), 0)  # a caret after the end of the line
    shown = visible(line)
    if len(shown) <= width:
        return shown, len(visible(line[:at])) + beyond
    before = _fit(reversed(line[max(0, at - width):at]), width // 3)  # nearest the caret first
    after = _fit(line[at:at + width], width - sum(map(len, before)))
    head = "..." if len(before) < at else ""
    tail = "..." if at + len(after) < len(line) else ""
    text = head + "".join(reversed(before)) + "".join(after) + tail
    return text, len(head) + sum(map(len, before)) + beyond


def _fit(chars: Iterable[str], budget: int) -> list[str]:
    """Escaped characters, in order, while they fit in `budget` characters."""
    out = []
    for c in chars:
        piece = visible(c)
        budget -= len(piece)
        if budget < 0:
            break
        out.append(piece)
    return out


def render(d: Diagnostic, lines: SourceLines, ran: list[str] | None = None) -> str:
    loc = d.location
    head = f"{one_line(str(loc))}: " if loc else "lazyspec: "
    out = [f"{head}{d.severity}[{d.code}]: {one_line(d.message)}"]
    text = lines(loc.path) if loc else None
    if loc and text and 0 < loc.line <= len(text):
        src, caret = quoted(text[loc.line - 1], loc.col)
        number = str(loc.line)
        pad = " " * len(number)
        out.append(f" {number} | {src}")
        out.append(f" {pad} | {' ' * caret}^")
    out += [f"  {one_line(n)}" for n in d.notes]
    if len(d.trail) > 1:
        out.append(f"  in: {_trail(d.trail)}")
    if ran is not None:
        out.append("  ran before it: " + _ran(ran))
    if d.hint:
        out.append(f"  hint: {one_line(d.hint)}")
    return "\n".join(out)


def _short(name: str, width: int = 60) -> str:
    """A name or path cut in the middle: they may be 256 and 1,024 characters long."""
    return name if len(name) <= width else f"{name[:width // 2 - 2]}...{name[-(width // 2 - 1):]}"


def _trail(trail: tuple[str, ...], shown: int = 10) -> str:
    """The block trail on one line of bounded length, however long and deep its names."""
    parts = [_short(t) for t in trail]
    if len(parts) > shown:
        parts = [*parts[:3], f"... ({len(parts) - shown + 1} more)", *parts[-(shown - 4):]]
    return one_line(" > ".join(parts))


def _ran(ran: list[str], shown: int = 8) -> str:
    if not ran:
        return "(nothing: it was the first node)"
    if len(ran) <= shown:
        return one_line(", ".join(map(_short, ran)))
    return f"{len(ran)} nodes, the last: " + one_line(", ".join(map(_short, ran[-shown:])))


MAX_SHOWN = 100  # diagnostics rendered on stderr


def render_all(diagnostics: list[Diagnostic], lines: SourceLines,
               ran: list[str] | None = None) -> str:
    ordered = sorted(diagnostics, key=lambda d: (d.location is not None, d.location or ""))
    blocks = [render(d, lines, ran) for d in ordered[:MAX_SHOWN]]
    if len(ordered) > MAX_SHOWN:  # 10,000 refused includes are not 10,000 screens
        blocks.append(f"... and {len(ordered) - MAX_SHOWN:,} more diagnostics (the first "
                      f"{MAX_SHOWN} are shown; --format json lists them all)")
    errors = sum(1 for d in diagnostics if d.severity == "error")
    if errors > 1:
        blocks.append(f"{errors} errors")
    return "\n\n".join(blocks)
