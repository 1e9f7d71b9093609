"""Seed a registry with a small busybox image built from Debian's busybox-static (no internet needed).

usage: python scripts/seed_image.py 127.0.0.1:5000/busybox:latest
The image is written as an OCI layout with tarfile and pushed by skopeo: ocibox never pushes what it pulls.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from oci import Layer, busybox_layer, push_image


def main() -> None:
    dest = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:5000/busybox:latest"
    registry, _, repo_tag = dest.partition("/")
    with tempfile.TemporaryDirectory() as d:
        push_image(Path(d), registry, repo_tag, [Layer(busybox_layer())])
    print(f"pushed {dest}")


if __name__ == "__main__":
    main()
