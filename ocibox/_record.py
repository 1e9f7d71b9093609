"""Value classes (``@record``) without the start-up cost of ``dataclasses``.

``dataclasses`` writes each class's ``__init__``, ``__eq__``, ``__repr__`` ... as source text and
compiles it when the class is defined, and imports ``inspect`` (with ``ast`` and ``dis``) to do so.
On the path of ``ocibox run`` that was 19 classes and 24 ms of a 116 ms profile: more than the
whole container setup. ``record`` gives the same classes (the subset ocibox uses: frozen or not,
defaults, ``field(default_factory=..., compare=False, repr=False)``, ``order=True``,
``__post_init__``, ``replace``) from shared generic methods, which cost nothing to define.
mypy sees them as dataclasses through ``dataclass_transform``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at runtime either: 5 ms of ocibox run
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T", bound=type)
    _R = TypeVar("_R")
else:

    def dataclass_transform(**_: object) -> Callable[[Callable[..., object]], Callable[..., object]]:
        return lambda f: f

    def overload(f: Callable[..., object]) -> Callable[..., object]:
        return f


__all__ = ["FrozenInstanceError", "field", "record", "replace"]

_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Field:
    __slots__ = ("compare", "default", "default_factory", "name", "repr")

    def __init__(self, default: Any, default_factory: Any, compare: bool, repr: bool) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] = _MISSING,
          compare: bool = True, repr: bool = True, hash: bool | None = None) -> Any:
    """Like ``dataclasses.field`` (``hash`` follows ``compare``, as dataclasses does by default)."""
    return _Field(default, default_factory, compare, repr)


def _fields_of(cls: type) -> list[_Field]:
    fields: dict[str, _Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, "__record_fields__", ()):
            fields[f.name] = f
    # not inspect.get_annotations: importing inspect is the cost this module avoids
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        if text.startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, _Field) else _Field(value, _MISSING, True, True)
        f.name = name
        if isinstance(value, _Field):
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        fields[name] = f
    return list(fields.values())


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    fields: tuple[_Field, ...] = cls.__record_fields__
    if len(args) > len(fields):
        raise TypeError(f"{cls.__name__}() takes {len(fields)} positional arguments but {len(args)} were given")
    setter = object.__setattr__
    for i, f in enumerate(fields):
        if i < len(args):
            if f.name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for argument '{f.name}'")
            value = args[i]
        elif f.name in kwargs:
            value = kwargs.pop(f.name)
        elif f.default is not _MISSING:
            value = f.default
        elif f.default_factory is not _MISSING:
            value = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}() missing required argument: '{f.name}'")
        setter(self, f.name, value)
    if kwargs:
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument '{next(iter(kwargs))}'")
    post = getattr(self, "__post_init__", None)
    if post is not None:
        post()


def _key(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in type(self).__record_compare__)


def _eq(self: Any, other: object) -> Any:  # bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _key(self) == _key(other)


def _hash(self: Any) -> int:
    return hash(_key(self))


def _repr(self: Any) -> str:
    cls = type(self)
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in cls.__record_fields__ if f.repr)
    return f"{cls.__qualname__}({inner})"


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _order(op: Callable[[tuple[Any, ...], tuple[Any, ...]], bool]) -> Callable[[Any, object], Any]:
    def compare(self: Any, other: object) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return op(_key(self), _key(other))

    return compare


_ORDER = {
    "__lt__": _order(lambda a, b: a < b), "__le__": _order(lambda a, b: a <= b),
    "__gt__": _order(lambda a, b: a > b), "__ge__": _order(lambda a, b: a >= b),
}


def _make(cls: _T, frozen: bool, order: bool) -> _T:
    fields = _fields_of(cls)
    seen_default = False
    for f in fields:
        has_default = f.default is not _MISSING or f.default_factory is not _MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__name__}: non-default field {f.name!r} follows a field with a default")
        seen_default = seen_default or has_default
    cls.__record_fields__ = tuple(fields)  # type: ignore[attr-defined]
    cls.__record_compare__ = tuple(f.name for f in fields if f.compare)  # type: ignore[attr-defined]
    setattr(cls, "__match_args__", tuple(f.name for f in fields))  # noqa: B010
    methods: dict[str, Any] = {"__init__": _init, "__repr__": _repr, "__eq__": _eq}
    if frozen:
        methods.update(__setattr__=_frozen_setattr, __delattr__=_frozen_delattr, __hash__=_hash)
    else:
        methods["__hash__"] = None  # mutable and comparable: unhashable, as dataclasses does
    if order:
        methods.update(_ORDER)
    for name, method in methods.items():
        # the class's own methods win, as with dataclasses (a class-level __eq__ leaves __hash__ None)
        if cls.__dict__.get(name) is None:
            setattr(cls, name, method)
    return cls


@overload
def record(cls: _T, /) -> _T: ...
@overload
def record(*, frozen: bool = True, order: bool = False) -> Callable[[_T], _T]: ...  # noqa: F811


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: _T | None = None, /, *, frozen: bool = True, order: bool = False) -> _T | Callable[[_T], _T]:  # noqa: F811
    """Class decorator: a dataclass, frozen unless ``frozen=False``."""
    if cls is not None:
        return _make(cls, frozen, order)
    return lambda c: _make(c, frozen, order)


def replace(obj: _R, /, **changes: Any) -> _R:
    """A copy of ``obj`` with some fields changed (``dataclasses.replace``)."""
    values = {f.name: getattr(obj, f.name) for f in type(obj).__record_fields__}  # type: ignore[attr-defined]
    values.update(changes)
    return type(obj)(**values)
