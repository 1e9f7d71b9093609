"""``python -m ocibox.runtime``: the same as the ``ocibox-runtime`` console script."""

from ocibox.runtime import main

main()
