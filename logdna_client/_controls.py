"""The characters text from elsewhere must not carry raw into a log or a terminal.

One set for every place that shows such text: the library's reports, which quote what a
server answered (``_transport.one_line``), and the devserver's live tail, which shows the
lines it received (``devserver/_tail.py``). Neither may let that text write lines of its
own, drive the terminal, or reorder what the reader sees.
"""

from __future__ import annotations

import re

__all__ = ["CONTROL", "escaped"]

#: C0 controls, DEL and the C1 controls (ESC and CSI start terminal sequences, NEL ends a
#: line), the Unicode line and paragraph separators, the bidirectional controls (the
#: Arabic letter mark U+061C, the marks U+200E/U+200F, the embeddings and overrides
#: U+202A-U+202E, the isolates U+2066-U+2069: they reorder how the rest of the line reads,
#: as in "Trojan Source", CVE-2021-42574), and lone surrogates (a stream writing UTF-8
#: cannot encode them, and loses the whole text).
CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def escaped(char: str) -> str:
    """One character of ``CONTROL`` as a visible escape: ``\\x1b``, ``\\u202e``."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
