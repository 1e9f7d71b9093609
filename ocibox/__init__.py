"""ocibox: a daemonless container tool."""

__version__ = "0.1.0"

