"""The parsers of a warm ``ocibox run`` that do without ``re`` (reference.py's grammar checks, the
digest and image-id fast paths) and without ``json``'s pure-Python parts (ocibox._json), held by
hypothesis to what they replace: the regexes of docker/distribution's grammar, ``re`` itself, and
``json.loads``/``json.dumps``. Bounded like test_fuzz_parsers (OCIBOX_FUZZ_EXAMPLES)."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocibox import _json, reference
from ocibox.digest import Digest
from ocibox.errors import UsageError
from ocibox.store._images import _id_prefix

BOUNDED = settings(max_examples=int(os.environ.get("OCIBOX_FUZZ_EXAMPLES", "300")), deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

# The regexes the string checks replace (reference.py before them, docker/distribution's grammar).
PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_C = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = re.compile(rf"^(?:{_C}(?:\.{_C})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?\Z")
TAG = re.compile(r"^[\w][\w.-]{0,127}\Z")
HEX64 = re.compile(r"^[a-f0-9]{64}\Z")
ID_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{4,64})\Z")

# Text made of the characters the grammar cares about, and some it refuses (unicode digits and letters,
# whitespace, brackets), so that both sides of every rule come up.
GRAMMAR = st.text(st.sampled_from(list("ab0z9AZ.-_:[]/@ \n\u00e9\u0663\u00b2")), max_size=24)
HEXISH = st.text(st.sampled_from(list("0123456789abcdefABG:sha256\n")), max_size=72)


@BOUNDED
@given(GRAMMAR)
def test_path_component_is_the_regex(s: str) -> None:
    assert reference._is_path_component(s) == bool(PATH_COMPONENT.match(s))


@BOUNDED
@given(GRAMMAR)
def test_domain_is_the_regex(s: str) -> None:
    assert reference._is_domain(s) == bool(DOMAIN.match(s))


@BOUNDED
@given(st.one_of(GRAMMAR, st.text(st.sampled_from(list("a_.-\u00e9")), min_size=120, max_size=140)))
def test_tag_is_the_regex(s: str) -> None:
    assert reference._is_tag(s) == bool(TAG.match(s))


@BOUNDED
@given(HEXISH)
def test_hex64_and_id_prefix_are_the_regexes(s: str) -> None:
    assert reference._is_hex64(s) == bool(HEX64.match(s))
    m = ID_PREFIX.match(s)
    assert _id_prefix(s) == (m.group(1) if m else None)


def test_the_checks_on_known_cases() -> None:
    assert [reference._is_domain(s) for s in ("[::1]:5000", "[]", "a-.b", "a.b:", "a.b:5000", "a:\u00b2")] == \
        [True, False, False, False, True, False]
    assert [reference._is_path_component(s) for s in ("a__b", "a___b", "a--b", "a._b", "_a", "a")] == \
        [True, False, True, False, False, True]


@BOUNDED
@given(st.one_of(HEXISH, st.text(st.sampled_from(list("0123456789abcdef")), min_size=64, max_size=64)
                 .map(lambda h: "sha256:" + h)))
def test_digest_parse_fast_path_agrees_with_the_rules(s: str) -> None:
    """The well-formed fast path gives what the regex path gives, and anything else still goes there."""
    def slow(text: str) -> Digest | str:
        m = re.match(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$", text)
        if not m or m.group(1) not in ("sha256", "sha512"):
            return "error"
        want = 64 if m.group(1) == "sha256" else 128
        if len(m.group(2)) != want or not re.fullmatch(r"[0-9a-f]+", m.group(2)):
            return "error"
        return Digest(m.group(1), m.group(2))

    try:
        got: Digest | str = Digest.parse(s)
    except UsageError:
        got = "error"
    assert got == slow(s)


# ------------------------------------------------------------------------------ json
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@BOUNDED
@given(JSON, st.booleans())
def test_json_dumps_and_loads_are_jsons(obj: Any, sort_keys: bool) -> None:
    text = _json.dumps(obj, sort_keys=sort_keys)
    assert text == json.dumps(obj, sort_keys=sort_keys)
    for doc in (text, f" \n{text}\t", text.encode()):
        assert same(_json.loads(doc), json.loads(doc))


def outcome(f: Any, arg: Any) -> Any:
    try:
        return ("ok", repr(f(arg)))
    except Exception as e:  # the same type and message: json's own errors
        return (type(e), str(e))


@BOUNDED
@given(st.one_of(st.text(st.sampled_from(list('{}[]",:0123456789.eE+-truefalsnNIfiy \t\n\\u\x01')), max_size=20),
                 st.binary(max_size=12)))
def test_json_loads_fails_as_json_does(doc: str | bytes) -> None:
    assert outcome(_json.loads, doc) == outcome(json.loads, doc)


def test_json_edges() -> None:
    for doc in ("\ufeff[1]", b"\xef\xbb\xbf[1]", "[1] x", "", "NaN", '"\\ud83d"', "[1]\n]"):
        assert outcome(_json.loads, doc) == outcome(json.loads, doc)
    for obj in (object(), {(1,): 2}, {1: 2, None: 3, 2.5: "x"}, "\u2603", (1, 2)):
        assert outcome(_json.dumps, obj) == outcome(json.dumps, obj)
    loop: list[Any] = []
    loop.append(loop)
    assert outcome(_json.dumps, loop) == outcome(json.dumps, loop)
