"""The editor's stream, read with bounds: what pygls reads the protocol from.

pygls reads a header line with `readline()` and then a body with `read(Content-Length)` in one
call: a header that says 10**14 bytes would have it allocate that much (a MemoryError, the
server gone with a traceback), and a header line with no line break would be read whole. This
reader refuses both: it answers end-of-stream instead (pygls then stops, cleanly) and says why
in `refused`, which `serve` turns into an error message and exit code 2.
"""

from __future__ import annotations

from typing import BinaryIO

# A message may carry a whole document; documents over lazyspec's spec size cap (1 MB) are not
# analysed, so 64 MiB is far above any message a working editor sends.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_LINE = 64 * 1024  # a header is `Content-Length: N` or `Content-Type: ...`


class CappedReader:
    """`readline` and `read` over a binary stream, refusing what is over the caps."""

    def __init__(self, raw: BinaryIO, max_message: int = MAX_MESSAGE_BYTES,
                 max_header: int = MAX_HEADER_LINE):
        self.raw = raw
        self.max_message, self.max_header = max_message, max_header
        self.refused: str | None = None  # why the stream was cut short, once it was

    def readline(self) -> bytes:
        if self.refused is not None:
            return b""
        line = self.raw.readline(self.max_header + 1)
        if len(line) > self.max_header:
            self.refused = (f"a header line from the editor is over the "
                            f"{self.max_header:,}-byte limit")
            return b""
        return line

    def read(self, n: int) -> bytes:
        if self.refused is not None:
            return b""
        if n > self.max_message:
            self.refused = (f"a message from the editor declares {n:,} bytes, over the "
                            f"{self.max_message:,}-byte limit")
            return b""
        return self.raw.read(n)


__all__ = ["MAX_MESSAGE_BYTES", "CappedReader"]
