"""``python -m ocibox.monitor``: build the monitor now (scripts/install-deps does) and print its path."""

from ocibox.monitor import binary

print(binary())
