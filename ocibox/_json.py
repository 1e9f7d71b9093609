"""``json.loads`` and ``json.dumps`` on the C accelerator (``_json``) alone.

The json package imports ``re`` (for the whitespace around a document), and ``re`` imports enum:
~5 ms of every command here, a tenth of a warm ``ocibox run``, which reads an image config and
writes a container's records. These two give what ``json.loads(s)`` and ``json.dumps(obj,
sort_keys=..., ensure_ascii=...)`` give, through the same scanner and encoder json uses; errors are json's own
``JSONDecodeError`` (a ValueError) and ``TypeError``. Anything beyond that (indent, hooks, other
separators) is ``json``'s job.
"""

from __future__ import annotations

from _json import encode_basestring as _encode_str_utf
from _json import encode_basestring_ascii as _encode_str
from _json import make_encoder as _make_encoder
from _json import make_scanner as _make_scanner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What the C scanner reads off json's JSONDecoder: plain values, as ``JSONDecoder()`` has them."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _make_scanner(_Context())  # type: ignore[arg-type]  # (typeshed asks for the scanner's own type)


def _error(msg: str, doc: str, pos: int) -> Exception:
    from json import JSONDecodeError

    return JSONDecodeError(msg, doc, pos)


def loads(s: str | bytes | bytearray) -> Any:
    """``json.loads(s)``."""
    if isinstance(s, str) and s.startswith("\ufeff"):  # json refuses it, with its own message
        import json

        return json.loads(s)
    if not isinstance(s, str):
        if s.startswith(b"\xef\xbb\xbf") or b"\x00" in s[:4]:  # a BOM or UTF-16/32: json detects those
            import json

            return json.loads(s)
        s = s.decode("utf-8", "surrogatepass")
    idx = len(s) - len(s.lstrip(_WHITESPACE))
    try:
        obj, end = _scan(s, idx)
    except StopIteration as err:
        raise _error("Expecting value", s, err.value) from None
    rest = s[end:].lstrip(_WHITESPACE)  # json's own check: only whitespace after the document
    if rest:
        raise _error("Extra data", s, len(s) - len(rest))
    return obj


def _default(o: object) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj: Any, *, sort_keys: bool = False, ensure_ascii: bool = True) -> str:
    """``json.dumps(obj, sort_keys=sort_keys, ensure_ascii=ensure_ascii)``: ``", "`` and ``": "``
    separators."""
    string = _encode_str if ensure_ascii else _encode_str_utf
    if isinstance(obj, str):
        return string(obj)
    encode = _make_encoder({}, _default, string, None, ": ", ", ", sort_keys, False, True)
    return "".join(encode(obj, 0))
