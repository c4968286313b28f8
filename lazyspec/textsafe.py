"""Text from a spec, a lock file or a file name, made safe to print. Torch-free.

Two layers, used by every writer:

- `visible(text)` is for one field (a name, a path, a message, a quoted source line): every
  character that would act on a terminal or a log instead of showing (C0 and C1 controls, DEL,
  ESC, CR, LF, NUL, lone surrogates, the Unicode line and paragraph separators, bidirectional
  overrides and invisible format characters) becomes a visible Python-style escape (`\\n`,
  `\\x1b`, `\\udc80`, `\\u202e`). A field so escaped stays on one line.
- `guard(text)` is the last step before text leaves lazyspec (stdout, stderr, report files):
  the same characters are escaped except the newlines between lines (and the colour codes lazyspec
  itself writes to a terminal), and no line can be read as a GitHub Actions workflow command.

GitHub's runner reads a command from any line of a step's output: `::name ...::data` where the
line starts with `::` after leading whitespace is trimmed (`ActionCommand.TryParseV2`), and the old
`##[name ...]data` anywhere in a line (`ActionCommand.TryParse`). `guard` writes the first `:` of
such a line as `\\x3a` and the second `#` of `##[` as `\\x23`: the text stays readable, and the
runner sees no command. Only `--format github` writes commands, and only its own (`commands=True`).
"""

from __future__ import annotations

import re

# Characters that never reach output as they are, beyond the C0 controls.
_OTHER = (
    "\x7f-\x9f"  # DEL, C1 (NEL, CSI, ...)
    "\ud800-\udfff"  # surrogates: in a Python str always lone (undecodable file names, "\udc80")
    "\u2028\u2029"  # line and paragraph separators: line breaks to YAML and to many viewers
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional marks and overrides
    "\u00ad\u200b\u2060-\u2064\ufeff"  # invisible: soft hyphen, zero-width space, joiners, BOM
    "\U000e0000-\U000e007f"  # tag characters: invisible text
)
_FIELD = re.compile(f"[\x00-\x1f{_OTHER}]")  # C0 all: TAB, LF, CR, ESC, NUL, ...
_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHER}]")  # C0 but TAB and LF, which lay out lines
_SGR = re.compile("\x1b\\[[0-9;]*m")  # colour codes, which a terminal report may hold
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# A line the runner reads as a v2 command: `::` after whitespace (Python's whitespace includes
# every character .NET's TrimStart removes). A v1 command: `##[` anywhere.
_V2_COMMAND = re.compile(r"^([^\S\n]*):(?=:)", re.MULTILINE)
_V1_COMMAND = re.compile(r"(?<=#)#(?=\[)")


def escape_char(c: str) -> str:
    """One character as a visible escape, the way Python's repr writes it."""
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def visible(text: str) -> str:
    """One field on one line, every control or invisible character escaped."""
    return _FIELD.sub(lambda m: escape_char(m.group()), text)


def guard(text: str, *, color: bool = False, commands: bool = False) -> str:
    """Text as it may leave lazyspec: newlines kept; other controls escaped (with `color`, the
    colour codes stay); no workflow command, except (with `commands`) lines that start with `::`,
    which only `--format github` writes, each built from escaped parts."""
    if color:
        parts = _SGR.split(text)
        codes = _SGR.findall(text)
        text = "".join(_unsafe_escaped(p) + (codes[i] if i < len(codes) else "")
                       for i, p in enumerate(parts))
    else:
        text = _unsafe_escaped(text)
    text = _V1_COMMAND.sub(r"\\x23", text)  # `##[` becomes `#\x23[`
    if not commands:
        text = _V2_COMMAND.sub(r"\1\\x3a", text)
    return text


def _unsafe_escaped(text: str) -> str:
    return _LINES.sub(lambda m: escape_char(m.group()), text)


def command_like(line: str) -> bool:
    """Whether GitHub's runner would read this line as a workflow command."""
    return line.lstrip().startswith("::") or "##[" in line


# The line breaks PyYAML counts (YAML 1.1): a quoted line must be the one a position names.
_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def source_lines(text: str) -> list[str]:
    """The lines of a file's text, as YAML positions count them."""
    lines = _BREAKS.split(text)
    if lines[-1] == "":  # a final line break ends the last line, it starts none
        lines.pop()
    return lines
