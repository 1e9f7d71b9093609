"""Long, coverage-guided fuzzing with atheris (libFuzzer for Python), on demand, not in the suite.

    .venv/bin/pip install atheris        # 3.0.0 installs as a wheel on Debian 12 / Python 3.11
    sudo .venv/bin/python tests/fuzz/long_fuzz.py unpack    -atheris_runs=200000
    .venv/bin/python tests/fuzz/long_fuzz.py reference -max_total_time=600
    .venv/bin/python tests/fuzz/long_fuzz.py challenge -max_total_time=600
    .venv/bin/python tests/fuzz/long_fuzz.py image     -max_total_time=600

(run from the checkout root; further arguments go to libFuzzer). Targets and properties are the
ones of tests/fuzz/test_fuzz_*.py: ``unpack`` feeds the bytes as a tar stream (seeded with the
hostile corpus of tests/hostile.py and with hypothesis-style escape gadgets) to
``ocibox.layers.unpack_layer`` in a store next to canary files and fails on any exception that is
not an OciboxError, on any change of the canary area and on anything left in the store's tmp/;
``reference`` checks parse/str round trips; ``challenge`` that parsing never raises; ``image``
that manifest/index/config decoding and platform selection raise only OciboxError. A crash
leaves a ``crash-*`` file that reproduces with ``python tests/fuzz/long_fuzz.py TARGET crash-...``.

Without atheris, the same targets run under hypothesis for longer instead:
    OCIBOX_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q tests/fuzz
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent.parent)]

import atheris  # noqa: E402

with atheris.instrument_imports():
    import tarfile  # noqa: F401

    import ocibox.image
    import ocibox.layers._extract
    import ocibox.puller._challenge
    import ocibox.reference

from ocibox.errors import OciboxError, ReferenceError_  # noqa: E402


def fuzz_reference(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(200)
    try:
        r = ocibox.reference.parse(text)
    except ReferenceError_:
        return
    assert ocibox.reference.parse(str(r)) == r, (text, str(r))


def fuzz_challenge(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(400)
    cs = ocibox.puller._challenge.parse_challenges(text)
    ocibox.puller._challenge.pick_challenge(cs)


def fuzz_image(data: bytes) -> None:
    from ocibox.image import ImageConfig, Index, Manifest, Platform, sniff_media_type

    for fn in (lambda: sniff_media_type(data, "", "fuzz"), lambda: Manifest.parse(data, "fuzz"),
               lambda: ImageConfig.parse(data, "fuzz"),
               lambda: Index.parse(data, "fuzz").select(Platform("linux", "arm64", "v8"), "fuzz")):
        try:
            fn()
        except OciboxError:
            pass


def fuzz_unpack(data: bytes) -> None:
    import tarfuzz

    tarfuzz.check_unpack(data)


def _seed_unpack(corpus: Path) -> None:
    import tarfuzz
    from hostile import corpus as hostile_corpus

    corpus.mkdir(parents=True, exist_ok=True)
    for case in hostile_corpus(str(tarfuzz.CANARY)):
        (corpus / f"hostile-{case.id}").write_bytes(case.tar)


def main() -> None:
    targets = {"reference": fuzz_reference, "challenge": fuzz_challenge, "image": fuzz_image, "unpack": fuzz_unpack}
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(targets)} [libFuzzer args]")
    name = sys.argv.pop(1)
    args = list(sys.argv)
    if name == "unpack":
        import tarfuzz

        if os.geteuid() != 0:
            sys.exit("the unpack target needs root (owners, devices, trusted xattrs)")
        tarfuzz.make_area()
        corpus = Path(os.environ.get("OCIBOX_FUZZ_CORPUS", "/tmp/ocibox-fuzz-corpus-unpack"))
        _seed_unpack(corpus)
        if not any(not a.startswith("-") for a in args[1:]):
            args.append(str(corpus))
    atheris.Setup(args, targets[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
