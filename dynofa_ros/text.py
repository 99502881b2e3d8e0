"""Bounded text for logs and error messages: strings that come from input are quoted short, never whole.

A topic can carry a 1 MiB `encoding` or `format` string, or one with newlines that would forge log lines;
`clip` is the one place that makes such a value safe to put in a warning.
"""
from __future__ import annotations

CLIP_CHARS = 64  # what a log line quotes of one input string
ELLIPSIS = '...'


def clip(value: object, limit: int = CLIP_CHARS) -> str:
    """At most `limit` printable characters of `value` (control characters escaped), '...' when cut."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    text = text[:limit]  # before escaping, so the cost never depends on the input's length
    if not text.isprintable():
        text = text.encode('unicode_escape').decode('ascii')
        cut = cut or len(text) > limit
        text = text[:limit]
    return text + ELLIPSIS if cut else text
