"""A corpus of hostile layers, built by the tests (never downloaded).

Each case is a tar that tries to write outside its layer directory or steer the
store. ``outside`` is the absolute path of a directory of canary files the
layer must never touch. ``refused`` cases must fail with HostileLayerError (or
LayerError where the tar is merely broken); ``confined`` ones may unpack, but
only inside the layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from oci import Entry, make_tar


@dataclass
class Case:
    id: str
    tar: bytes
    expect: str  # "hostile" | "layer-error" | "confined"


def corpus(outside: str) -> list[Case]:
    o = outside.lstrip("/")
    canary = f"{outside}/canary"
    up = "../" * 12
    c: list[Case] = []

    def add(id_: str, expect: str, *entries: Entry) -> None:
        c.append(Case(id_, make_tar(list(entries)), expect))

    # names that traverse
    add("dotdot-file", "hostile", Entry(f"{up}{o}/pwned", data=b"x"))
    add("dotdot-inner", "hostile", Entry("a", "dir"), Entry(f"a/../../{o}/pwned", data=b"x"))
    add("dotdot-dir", "hostile", Entry("../x", "dir"))
    add("absolute-name", "confined", Entry(f"{outside}/pwned", data=b"x"))
    # symlink escapes followed by writes through them. Symlinks met on the way resolve
    # inside the layer: where the target does not exist there, the entry is refused;
    # where the layer has a directory of that name ("mirror"), the write lands in it.
    mirror = Entry(o, "dir")
    for suffix, expect, first in (("", "hostile", []), ("-mirrored", "confined", [mirror])):
        add("abs-symlink-write" + suffix, expect, *first, Entry("evil", "symlink", linkname=outside),
            Entry("evil/pwned", data=b"x"))
        add("rel-symlink-write" + suffix, expect, *first, Entry("evil", "symlink", linkname=f"{up}{o}"),
            Entry("evil/pwned", data=b"x"))
        add("symlink-chain-dir" + suffix, expect, *first, Entry("a", "symlink", linkname="b"),
            Entry("b", "symlink", linkname=f"{up}{o}"), Entry("a/pwned", data=b"x"))
        add("symlink-then-device" + suffix, expect, *first, Entry("d", "symlink", linkname=outside),
            Entry("d/null", "char", devmajor=1, devminor=3, mode=0o666))
        # a parent directory replaced by a symlink in the middle of the layer
        add("parent-replaced" + suffix, expect, *first, Entry("d", "dir"), Entry("d/x", data=b"x"),
            Entry("d", "symlink", linkname=outside), Entry("d/pwned", data=b"x"),
            Entry("d/sub", "dir", mode=0o777))
        # whiteouts that pass through a symlink
        add("whiteout-through-symlink" + suffix, expect, *first, Entry("w", "symlink", linkname=outside),
            Entry("w/.wh.canary", data=b""))
        add("opaque-through-symlink" + suffix, expect, *first, Entry("w", "symlink", linkname=outside),
            Entry("w/.wh..wh..opq", data=b""))
    add("symlink-to-file-then-file", "confined", Entry("f", "symlink", linkname=canary),
        Entry("f", data=b"overwritten"))
    add("symlink-to-file-then-hardlink-over", "confined", Entry("f", "symlink", linkname=canary),
        Entry("g", data=b"g"), Entry("f", "hardlink", linkname="g"))
    add("symlink-dir-then-dir-entry", "confined", Entry("d", "symlink", linkname=outside),
        Entry("d", "dir", mode=0o777), Entry("d/pwned", data=b"x"))
    # hardlink escapes
    add("hardlink-dotdot", "hostile", Entry("h", "hardlink", linkname=f"{up}{o}/canary"))
    add("hardlink-absolute", "hostile", Entry("h", "hardlink", linkname=canary))
    add("hardlink-absent", "hostile", Entry("h", "hardlink", linkname="nope"))
    add("hardlink-through-symlink", "hostile", Entry("s", "symlink", linkname=outside),
        Entry("h", "hardlink", linkname="s/canary"))
    add("hardlink-to-symlink-then-mode", "confined", Entry("s", "symlink", linkname=canary),
        Entry("h", "hardlink", linkname="s", mode=0o4777),
        Entry("h2", "hardlink", linkname="h", mode=0o4777, uid=1234))
    add("hardlink-to-dir", "hostile", Entry("d", "dir"), Entry("h", "hardlink", linkname="d"))
    # whiteouts that traverse
    add("whiteout-dot", "hostile", Entry(".wh..", data=b""))
    add("whiteout-dotdot", "hostile", Entry("a/.wh...", data=b""))
    add("whiteout-parent-dotdot", "hostile", Entry(f"{up}{o}/.wh.canary", data=b""))
    # the root changing type
    add("root-symlink", "hostile", Entry(".", "symlink", linkname=outside))
    add("root-file", "hostile", Entry("./", data=b"x"))
    add("root-hardlink", "hostile", Entry("f", data=b"f"), Entry("/", "hardlink", linkname="f"))
    # xattrs that would steer overlayfs or the LSM
    add("trusted-xattrs", "confined",
        Entry("d", "dir", pax={"SCHILY.xattr.trusted.overlay.opaque": "y",
                               "SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
        Entry("f", data=b"f", pax={"SCHILY.xattr.trusted.overlay.metacopy": "",
                                   "SCHILY.xattr.security.selinux": "system_u:object_r:shadow_t:s0"}))
    # owners out of range
    add("uid-too-big", "hostile", Entry("f", data=b"f", pax={"uid": str(2**32)}))
    add("gid-minus-one", "hostile", Entry("f", data=b"f", pax={"gid": str(2**32 - 1)}))
    # over-long names
    add("long-component", "hostile", Entry("a" * 300, data=b"x"))
    add("long-path", "hostile", Entry("/".join(["d" * 200] * 25), data=b"x"))
    add("long-symlink-target", "hostile", Entry("s", "symlink", linkname="x" * 5000))
    return c
