"""ocibox._record: the dataclass subset ocibox uses, checked against dataclasses' behaviour."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from ocibox._record import FrozenInstanceError, field, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default="", compare=False, repr=False)
    KIND: ClassVar[str] = "point"


@dataclasses.dataclass(frozen=True)
class DPoint:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default="", compare=False, repr=False)


def test_init_positional_keyword_defaults() -> None:
    assert (Point(1).x, Point(1).y, Point(1).tags) == (1, 0, [])
    p = Point(1, y=2, tags=["a"], note="n")
    assert (p.x, p.y, p.tags, p.note) == (1, 2, ["a"], "n")
    assert Point(1).tags is not Point(1).tags  # a fresh default per instance
    assert Point.KIND == "point" and [f.name for f in Point.__record_fields__] == ["x", "y", "tags", "note"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("call", [lambda: Point(), lambda: Point(1, 2, [], "", 5), lambda: Point(1, x=2),
                                  lambda: Point(1, z=3)])
def test_bad_arguments_are_type_errors_like_dataclasses(call: object) -> None:
    with pytest.raises(TypeError):
        call()  # type: ignore[operator]


def test_repr_eq_hash_match_dataclasses() -> None:
    p, d = Point(1, 2, ["t"], note="hidden"), DPoint(1, 2, ["t"], note="hidden")
    assert repr(p).replace("Point", "DPoint") == repr(d)
    assert Point(1, 2, note="a") == Point(1, 2, note="b")  # compare=False
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != DPoint(1)
    assert hash(Point(1, 2, ())) == hash(Point(1, 2, (), note="x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hash(Point(1, 2, ["unhashable"]))


def test_frozen_refuses_assignment_and_deletion() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert p.x == 1


def test_order_and_replace() -> None:
    @record(order=True)
    class V:
        major: int
        minor: int

    assert sorted([V(1, 2), V(0, 9), V(1, 0)]) == [V(0, 9), V(1, 0), V(1, 2)]
    assert V(1, 2) < V(2, 0) and V(1, 2) >= V(1, 2)
    with pytest.raises(TypeError):
        assert V(1, 2) < (1, 3)  # type: ignore[operator]
    assert replace(V(1, 2), minor=5) == V(1, 5)
    with pytest.raises(TypeError):
        replace(V(1, 2), patch=1)


def test_mutable_record_with_post_init_is_unhashable() -> None:
    @record(frozen=False)
    class Box:
        value: int
        doubled: int = 0

        def __post_init__(self) -> None:
            self.doubled = self.value * 2

    b = Box(3)
    assert b.doubled == 6
    b.value = 4
    assert (b.value, b.doubled) == (4, 6) and Box(3) == Box(3) and Box(3) != Box(4)
    with pytest.raises(TypeError):
        hash(b)


def test_own_methods_win_and_field_order_is_checked() -> None:
    @record
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

    assert repr(Named("a")) == "<a>"
    with pytest.raises(TypeError, match="non-default field 'b'"):
        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]
