"""Showing text that came from outside (VM names, xe's messages) without letting it act.

A VM name may contain a newline, a carriage return or a terminal escape sequence: shown raw, it
writes a fake line into the log (a fake "all well" into the mail) or rewrites the screen.
``shown`` escapes every such character, so one name is always one visible run of text.
"""

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}
# characters that reorder or hide the text around them (bidirectional controls)
_BIDI = {"\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
         "\u2066", "\u2067", "\u2068", "\u2069"}


def _escaped(char):
    if char in _NAMED:
        return _NAMED[char]
    if char in _BIDI or unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs"):
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def shown(text):
    """Given any text (or object), returns it as text with control characters, line and paragraph
    separators and bidirectional controls escaped ('\\n', '\\x1b', '\\u2028'); the rest unchanged."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():
        return text
    return "".join(_escaped(c) for c in text)
