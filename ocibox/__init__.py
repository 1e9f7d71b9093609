"""ocibox: a daemonless container tool."""

__version__ = "0.1.0"


def _import_pathlib() -> None:
    """Import pathlib without urllib.parse: pathlib takes one function of it, for ``Path.as_uri()``
    (which ocibox never calls), and urllib.parse imports ipaddress: ~2 ms of every command, about a
    tenth of a warm ``ocibox ps``. pathlib gets a stand-in that imports the real function on first
    use; the real module is the one any later import gets."""
    import sys

    if "pathlib" in sys.modules or "urllib.parse" in sys.modules:
        return
    import types

    def quote_from_bytes(*args: object, **kwargs: object) -> str:
        from urllib.parse import quote_from_bytes as real

        return real(*args, **kwargs)  # type: ignore[arg-type]

    stand_in = types.ModuleType("urllib.parse")
    stand_in.quote_from_bytes = quote_from_bytes  # type: ignore[attr-defined]
    sys.modules["urllib.parse"] = stand_in
    try:
        import pathlib  # noqa: F401
    finally:
        if sys.modules.get("urllib.parse") is stand_in:
            del sys.modules["urllib.parse"]


_import_pathlib()
