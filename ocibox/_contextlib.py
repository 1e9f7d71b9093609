"""``contextlib.suppress`` and ``contextlib.contextmanager`` without contextlib's imports.

contextlib imports functools and collections (for ``wraps`` and ExitStack's ``deque``), and they
import operator, keyword, reprlib...: ~2-3 ms of every command here, about a twentieth of a warm
``ocibox run``. The modules on that path take these two from here; they behave as contextlib's do
(the generator protocol below follows ``contextlib._GeneratorContextManager``), and mypy sees
contextlib's own.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import contextmanager as contextmanager
    from contextlib import suppress as suppress
else:

    class suppress:
        """Leave the block silently on one of the given exceptions."""

        __slots__ = ("_exceptions",)

        def __init__(self, *exceptions):
            self._exceptions = exceptions

        def __enter__(self):
            return None

        def __exit__(self, exctype, excinst, exctb):
            return exctype is not None and issubclass(exctype, self._exceptions)

    class _GeneratorContextManager:
        __slots__ = ("gen",)

        def __init__(self, gen):
            self.gen = gen

        def __enter__(self):
            try:
                return next(self.gen)
            except StopIteration:
                raise RuntimeError("generator didn't yield") from None

        def __exit__(self, typ, value, traceback):
            if typ is None:
                try:
                    next(self.gen)
                except StopIteration:
                    return False
                raise RuntimeError("generator didn't stop")
            if value is None:
                value = typ()
            try:
                self.gen.throw(typ, value, traceback)
            except StopIteration as exc:
                return exc is not value  # the generator caught the exception and ended
            except RuntimeError as exc:
                if exc is value:
                    exc.__traceback__ = traceback
                    return False
                if isinstance(value, StopIteration) and exc.__cause__ is value:
                    value.__traceback__ = traceback
                    return False
                raise
            except BaseException as exc:
                if exc is not value:
                    raise
                exc.__traceback__ = traceback
                return False
            raise RuntimeError("generator didn't stop after throw()")

    def contextmanager(func):
        """A generator function as a context manager: the code before its ``yield`` is the enter,
        the code after it the exit; an exception of the block is raised at the ``yield``."""

        def helper(*args, **kwds):
            return _GeneratorContextManager(func(*args, **kwds))

        helper.__name__ = func.__name__
        helper.__qualname__ = func.__qualname__
        helper.__doc__ = func.__doc__
        helper.__module__ = func.__module__
        helper.__wrapped__ = func
        return helper
