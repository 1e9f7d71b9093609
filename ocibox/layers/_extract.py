"""Safe application of one layer's tar stream into its own directory.

``_tarstream`` is only the parser (``tarfile``'s rules, and ``tarfile`` itself for
unusual entries). Every entry is applied by this module relative to the layer
directory:

* each entry's parent directory is resolved from scratch, inside the layer
  root, with ``openat2(RESOLVE_IN_ROOT)`` (symlinks met on the way, absolute or
  relative, resolve as if the layer were ``/``: they can never lead out);
* the final component is always acted on through the parent's fd with
  no-follow calls (``O_NOFOLLOW``, ``AT_SYMLINK_NOFOLLOW``, ``lchown``), or
  through an fd of the object just created;
* ``..`` components, whiteouts that traverse, hardlinks to absent targets,
  a change of the root's type, owners out of range and over-long names are
  refused with :class:`HostileLayerError` naming the entry.

Whiteouts are converted to overlayfs' format as they come: ``.wh.NAME`` becomes
a 0:0 character device, ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on
its directory (``user.overlay.opaque=y`` without root: the form overlayfs reads
with ``userxattr`` in a user namespace). Per the OCI image spec (layer.md) whiteouts hide only lower
layers: an entry of this layer with the same name is kept whether it comes
before the whiteout or after it (a directory that replaces a whiteout of its
own layer is made opaque, which is what the lower layers see: gone, then
created anew).

Directory modes and times are applied at the end, so a 0555 directory can be
filled and mtimes are not disturbed by later entries.

Without root (``Owners``): the layer is applied by root of a user namespace that
maps the user's ids, so owners land as the mapped ids on disk. An owner outside
those ids is an error naming the entry, the id and the mapped range (never
silently root), unless the user asked to squash such owners to root. Device
nodes cannot be made there and are skipped, as containers/storage does.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from ocibox.digest import Readable
from ocibox.errors import HostileLayerError, LayerError
from ocibox.layers._decompress import Prefetcher
from ocibox.layers._tarstream import Member, TarStream
from ocibox.linux import syscalls

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
USER_OPAQUE_XATTR = "user.overlay.opaque"

MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "no change" to chown: never a real owner
PATH_MAX = 4096
NAME_MAX = 255
_MAX_CACHED_FDS = 256
_RESOLVE = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS

Parts = tuple[str, ...]
Entry = Member | tarfile.TarInfo


class _ParentNotADir(LayerError):
    """An entry below a path that is not a directory in this layer."""


class HashingReader:
    """Counts and hashes every byte that passes; remembers whether any was non-zero."""

    def __init__(self, inner: Readable) -> None:
        self._inner = inner
        self.hash = hashlib.sha256()
        self.count = 0
        self.nonzero = False

    def read(self, n: int = -1, /) -> bytes:
        data = self._inner.read(n)
        if data:
            self.hash.update(data)
            self.count += len(data)
            if not self.nonzero and data.count(0) != len(data):
                self.nonzero = True
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def allowed_xattr(name: str) -> bool:
    """PAX xattrs kept: never ``trusted.*`` nor ``user.overlay.*`` (a layer must not steer
    overlayfs, rooted or with ``userxattr``), and of ``security.*`` only ``security.capability``
    (file capabilities of the image)."""
    if name.startswith(("trusted.", "user.overlay.")):
        return False
    return not (name.startswith("security.") and name != "security.capability")


def pax_xattrs(ti: Entry) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in ti.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr.") :]
            if allowed_xattr(name):
                out[name] = value.encode("utf-8", "surrogateescape")
    return out


class Owners:
    """The owners a layer unpacked without root may have: container ids ``0..uids-1`` and
    ``0..gids-1`` (the user's maps); ``squash``: others become root (podman's ignore_chown_errors)."""

    def __init__(self, uids: int, gids: int, *, squash: bool = False, user: str = "", howto: str = "") -> None:
        self.uids, self.gids, self.squash, self.user, self.howto = uids, gids, squash, user, howto

    @classmethod
    def here(cls, squash: bool = False) -> Owners | None:
        """The policy of this process: None as the host's root (every id is real)."""
        from ocibox.rootless import current, howto, is_rootless

        if not is_rootless():
            return None
        maps = current()
        return cls(maps.uid_count, maps.gid_count, squash=squash, user=maps.user, howto=howto(maps))

    def check(self, ti: Entry, what: str) -> None:
        """Squash or refuse an owner outside the maps (in place: ``ti.uid``/``ti.gid``)."""
        if ti.uid < self.uids and ti.gid < self.gids:
            return
        if self.squash:
            ti.uid = ti.uid if ti.uid < self.uids else 0
            ti.gid = ti.gid if ti.gid < self.gids else 0
            return
        kind, value, count = ("uid", ti.uid, self.uids) if ti.uid >= self.uids else ("gid", ti.gid, self.gids)
        if count == 1:
            raise LayerError(
                f"{what}: entry {ti.name!r} belongs to {kind} {value}, but user {self.user} has no subordinate ids "
                f"(only root exists in its containers): an administrator can give a range: {self.howto}; or "
                "squash every owner to root with --ignore-chown-errors (storage.ignore_chown_errors in the config)")
        raise LayerError(
            f"{what}: entry {ti.name!r}: {kind} {value} is outside the ids mapped for user {self.user} (container "
            f"{kind}s 0-{count - 1}); the image needs a larger subordinate range in /etc/sub{kind}, or "
            "--ignore-chown-errors to unpack such files as root")


@dataclass
class _DirMeta:
    mode: int
    mtime_ns: int


@dataclass
class Applier:
    """Applies tar entries into ``root``; one per layer, not shared between threads."""

    root: Path
    what: str
    owners: Owners | None = None  # without root: the owners the user's maps allow
    size: int = 0
    entries: int = 0
    skipped_devices: int = 0  # without root: device nodes that cannot be made
    _dirs: dict[Parts, _DirMeta] = field(default_factory=dict)
    _whiteouts: set[Parts] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rootfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._privileged = os.geteuid() == 0
        # Parent directory fds by path, each resolved once with RESOLVE_IN_ROOT. A cached fd stays
        # the right directory as long as nothing on its path is removed or replaced, and only
        # _clear removes anything: it empties the cache (the fds are closed after the entry).
        self._fds: dict[Parts, int] = {}
        self._stale: list[int] = []
        # Who a new inode belongs to without a chown: this process's ids, unless the layer root is
        # setgid (then new inodes take its group). Directories made here stay 0700/0755 (without
        # setgid) until finish(), so that holds for every directory of the layer.
        root_st = os.fstat(self._rootfd)
        self._own = (-1, -1) if root_st.st_mode & stat.S_ISGID else (os.geteuid(), os.getegid())
        self._umask = _umask()
        self.opaque = OPAQUE_XATTR if self.owners is None else USER_OPAQUE_XATTR

    def close(self) -> None:
        self._drop_fds()
        self._close_stale()
        if self._rootfd >= 0:
            os.close(self._rootfd)
            self._rootfd = -1

    def _drop_fds(self) -> None:
        self._stale.extend(self._fds.values())
        self._fds.clear()

    def _close_stale(self) -> None:
        while self._stale:
            os.close(self._stale.pop())

    # ----- helpers ---------------------------------------------------------------------------
    def _hostile(self, ti: Entry | str, why: str) -> HostileLayerError:
        name = ti if isinstance(ti, str) else ti.name
        return HostileLayerError(f"{self.what}: refusing entry {name!r}: {why}; the image is unsafe, do not use it")

    def _components(self, name: str, ti: Entry, what: str = "name") -> Parts:
        if "\0" in name:
            raise self._hostile(ti, f"{what} contains a NUL byte")
        if len(name.encode("utf-8", "surrogateescape")) >= PATH_MAX:
            raise self._hostile(ti, f"{what} is longer than {PATH_MAX - 1} bytes")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        for p in parts:
            if p == "..":
                raise self._hostile(ti, f"{what} {name!r} contains '..'")
            if len(p.encode("utf-8", "surrogateescape")) > NAME_MAX:
                raise self._hostile(ti, f"{what} has a component longer than {NAME_MAX} bytes")
        return parts

    def _open_in_root(self, parts: Parts, flags: int) -> int:
        return syscalls.openat2(self._rootfd, "/".join(parts) or ".", flags, 0, _RESOLVE)

    def _parent(self, parts: Parts, ti: Entry, *, create: bool = True) -> int:
        """A borrowed fd of directory ``parts`` inside the root (do not close it): resolved
        from scratch the first time (missing directories are created 0755 root:root when
        ``create``), then cached until something is removed (see ``_clear``)."""
        fd = self._fds.get(parts)
        if fd is None:
            if len(self._fds) >= _MAX_CACHED_FDS:
                self._drop_fds()
            fd = self._fds[parts] = self._resolve_parent(parts, ti, create=create)
        return fd

    def _resolve_parent(self, parts: Parts, ti: Entry, *, create: bool) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY
        try:
            return self._open_in_root(parts, flags)
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise _ParentNotADir(f"{self.what}: entry {ti.name!r}: a parent is not a directory") from None
            if e.errno != errno.ENOENT or not create:
                raise
        fd = os.dup(self._rootfd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = self._open_in_root(parts[: i + 1], flags)
                except OSError as e:
                    if e.errno == errno.ENOTDIR:
                        raise _ParentNotADir(f"{self.what}: entry {ti.name!r}: a parent is not a directory") from None
                    if e.errno != errno.ENOENT:
                        raise
                    try:
                        os.mkdir(comp, 0o755, dir_fd=fd)
                    except FileExistsError:
                        # a dangling symlink stands there
                        raise self._hostile(ti, f"parent {'/'.join(parts[: i + 1])!r} is a dangling symlink") from None
                    nfd = os.open(comp, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                    os.fchmod(nfd, 0o755)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_ids(self, ti: Entry) -> None:
        for kind, v in (("uid", ti.uid), ("gid", ti.gid)):
            if not isinstance(v, int) or v < 0 or v > MAX_ID:
                raise self._hostile(ti, f"{kind} {v} is out of range 0..{MAX_ID}")

    def _clear(self, pfd: int, parts: Parts, *, keep_dir: bool) -> str:
        """Make room for ``parts`` (in dir ``pfd``). Returns what stood there: '', 'dir', 'whiteout', 'other'."""
        name = parts[-1]
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return ""
        if stat.S_ISDIR(st.st_mode) and keep_dir:
            return "dir"
        # Something is removed: a cached parent fd may have been resolved through it.
        self._drop_fds()
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=pfd)
            n = len(parts)
            for k in [k for k in self._dirs if k[:n] == parts]:
                del self._dirs[k]
            for k in [k for k in self._whiteouts if k[:n] == parts]:
                self._whiteouts.discard(k)
            return "other"
        os.unlink(name, dir_fd=pfd)
        if parts in self._whiteouts:
            self._whiteouts.discard(parts)
            return "whiteout"
        return "other"

    def _set_xattrs(self, target: int | str, xattrs: dict[str, bytes], ti: Entry) -> None:
        for k, v in xattrs.items():
            try:
                os.setxattr(target, k, v)
            except OSError as e:
                if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) or (e.errno == errno.EPERM and not ti.isreg()):
                    continue  # the store's filesystem, or this kind of file, cannot hold it
                raise

    # ----- entries ---------------------------------------------------------------------------
    def apply(self, ti: Entry, tf: TarStream) -> None:
        self.entries += 1
        parts = self._components(ti.name, ti)
        self._check_ids(ti)
        if not parts:
            if not ti.isdir():
                raise self._hostile(ti, "it would change the type of the layer root")
            if self.owners is not None:
                self.owners.check(ti, self.what)
            fd = os.dup(self._rootfd)
            try:
                self._dir_meta(fd, (), ti)
            finally:
                os.close(fd)
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, ti)
            return
        if self.owners is not None and not ti.islnk():  # a hardlink takes its target's owner
            self.owners.check(ti, self.what)
        try:
            pfd = self._parent(parts[:-1], ti)
            if ti.isdir():
                self._mkdir(pfd, parts, ti)
            elif ti.isreg():
                self._file(pfd, parts, ti, tf)
            elif ti.issym():
                self._symlink(pfd, parts, ti)
            elif ti.islnk():
                self._hardlink(pfd, parts, ti)
            elif ti.ischr() or ti.isblk() or ti.isfifo():
                self._node(pfd, parts, ti)
            else:
                raise LayerError(f"{self.what}: entry {ti.name!r}: unsupported tar entry type {ti.type!r}")
        finally:
            self._close_stale()

    def _mkdir(self, pfd: int, parts: Parts, ti: Entry) -> None:
        try:
            os.mkdir(parts[-1], 0o700, dir_fd=pfd)
            was = ""
        except FileExistsError:
            was = self._clear(pfd, parts, keep_dir=True)
            if was != "dir":
                os.mkdir(parts[-1], 0o700, dir_fd=pfd)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if was == "whiteout":
                # Gone from the lower layers, then created anew in this one.
                os.setxattr(fd, self.opaque, b"y")
            self._dir_meta(fd, parts, ti, new=was != "dir")
        finally:
            os.close(fd)

    def _dir_meta(self, fd: int, parts: Parts, ti: Entry, *, new: bool = False) -> None:
        if self._privileged and not (new and (ti.uid, ti.gid) == self._own):
            os.fchown(fd, ti.uid, ti.gid)
        self._set_xattrs(fd, pax_xattrs(ti), ti)
        self._dirs[parts] = _DirMeta(ti.mode & 0o7777, _ns(ti.mtime))

    def _create(self, pfd: int, parts: Parts, mode: int) -> int:
        """A new regular file, open for writing; whatever stood there is cleared first."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(parts[-1], flags, mode, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, parts, keep_dir=False)
            return os.open(parts[-1], flags, mode, dir_fd=pfd)

    def _file(self, pfd: int, parts: Parts, ti: Entry, tf: TarStream) -> None:
        mode = ti.mode & 0o7777
        # Created with its final permission bits where the umask allows (no fchmod then); the
        # setuid, setgid and sticky bits only by fchmod, after the data and the chown.
        fd = self._create(pfd, parts, mode & 0o777)
        try:
            self.size += tf.write_data(ti, fd)
            chown = self._privileged and (ti.uid, ti.gid) != self._own
            if chown:
                os.fchown(fd, ti.uid, ti.gid)
            if chown or mode != mode & 0o777 & ~self._umask:
                os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
            self._set_xattrs(fd, pax_xattrs(ti), ti)  # after chown, which clears security.capability
            os.utime(fd, ns=(_ns(ti.mtime), _ns(ti.mtime)))
        finally:
            os.close(fd)

    def _symlink(self, pfd: int, parts: Parts, ti: Entry) -> None:
        if "\0" in ti.linkname or len(ti.linkname.encode("utf-8", "surrogateescape")) >= PATH_MAX:
            raise self._hostile(ti, "bad symlink target")
        if not ti.linkname:
            raise LayerError(f"{self.what}: entry {ti.name!r}: symlink with an empty target")
        # Absolute targets are kept as they are: they resolve inside the container at run time.
        try:
            os.symlink(ti.linkname, parts[-1], dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, parts, keep_dir=False)
            os.symlink(ti.linkname, parts[-1], dir_fd=pfd)
        if self._privileged and (ti.uid, ti.gid) != self._own:
            os.chown(parts[-1], ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(parts[-1], ns=(_ns(ti.mtime), _ns(ti.mtime)), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, pfd: int, parts: Parts, ti: Entry) -> None:
        tparts = self._components(ti.linkname, ti, "hardlink target")
        if not tparts:
            raise self._hostile(ti, "hardlink to the layer root")
        try:
            tpfd = self._parent(tparts[:-1], ti, create=False)
        except FileNotFoundError:
            raise self._hostile(ti, f"hardlink target {ti.linkname!r} is not in this layer") from None
        try:
            tst = os.lstat(tparts[-1], dir_fd=tpfd)
        except FileNotFoundError:
            raise self._hostile(ti, f"hardlink target {ti.linkname!r} is not in this layer") from None
        if stat.S_ISDIR(tst.st_mode):
            raise self._hostile(ti, f"hardlink target {ti.linkname!r} is a directory")
        if tparts in self._whiteouts:
            raise self._hostile(ti, f"hardlink target {ti.linkname!r} is a whiteout")
        try:
            cur = os.lstat(parts[-1], dir_fd=pfd)
            if (cur.st_dev, cur.st_ino) == (tst.st_dev, tst.st_ino):
                return
        except FileNotFoundError:
            pass
        self._clear(pfd, parts, keep_dir=False)  # tpfd stays open until the entry is done
        # linkat without AT_SYMLINK_FOLLOW: a link to a symlink is another name of the
        # symlink itself. No metadata is applied: the inode's is that of its first entry.
        os.link(tparts[-1], parts[-1], src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _node(self, pfd: int, parts: Parts, ti: Entry) -> None:
        self._clear(pfd, parts, keep_dir=False)
        if ti.isfifo():
            os.mkfifo(parts[-1], 0o600, dir_fd=pfd)
        else:
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            try:
                os.mknod(parts[-1], kind | 0o600, os.makedev(ti.devmajor, ti.devminor), dir_fd=pfd)
            except PermissionError:
                if self.owners is None:
                    raise
                self.skipped_devices += 1  # no device in a user namespace (containers/storage skips them too)
                return
        self._node_meta(pfd, parts[-1], ti.uid, ti.gid, ti.mode & 0o7777, _ns(ti.mtime), pax_xattrs(ti), ti)

    def _node_meta(self, pfd: int, name: str, uid: int, gid: int, mode: int, mtime_ns: int,
                   xattrs: dict[str, bytes], ti: Entry) -> None:
        if self._privileged and (uid, gid) != self._own:  # a new node: already ours otherwise
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):  # cannot happen: we just made it
                raise LayerError(f"{self.what}: entry {ti.name!r}: changed under us")
            # An O_PATH fd cannot fchmod; its /proc magic link reaches exactly this inode.
            os.chmod(f"/proc/self/fd/{fd}", mode)
            self._set_xattrs(f"/proc/self/fd/{fd}", xattrs, ti)
        finally:
            os.close(fd)
        os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, parts: Parts, ti: Entry) -> None:
        try:
            self._check_whiteout(parts, ti)
        except _ParentNotADir:
            # Below a non-directory of this same layer (umoci writes "d" as a file, then
            # "d/.wh.x"): that non-directory already hides everything of the lower layers.
            return

    def _check_whiteout(self, parts: Parts, ti: Entry) -> None:
        base = parts[-1]
        if base == WHITEOUT_OPAQUE:
            os.setxattr(self._parent(parts[:-1], ti), self.opaque, b"y")
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): ignored, as containerd does
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise self._hostile(ti, "whiteout name traverses")
        target = (*parts[:-1], name)
        pfd = self._parent(parts[:-1], ti)
        try:
            os.lstat(name, dir_fd=pfd)
            return  # an entry of this very layer: whiteouts hide only lower layers
        except FileNotFoundError:
            pass
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        self._whiteouts.add(target)
        self._node_meta(pfd, name, 0, 0, 0, _ns(ti.mtime), {}, ti)

    def finish(self) -> None:
        """Directory modes and times, last (deepest first), each resolved from scratch."""
        for parts in sorted(self._dirs, key=len, reverse=True):
            meta = self._dirs[parts]
            try:
                fd = self._open_in_root(parts, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue  # replaced by a non-directory later in the layer
            try:
                os.fchmod(fd, meta.mode)
                os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
            finally:
                os.close(fd)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777  # unknown: every mode is then set by fchmod


def _ns(mtime: float | int) -> int:
    if isinstance(mtime, int):
        return mtime * 1_000_000_000
    return round(mtime * 1_000_000_000)


def extract(stream: Readable, root: Path, what: str, owners: Owners | None = None) -> tuple[HashingReader, Applier]:
    """Parse ``stream`` (uncompressed tar) and apply it into ``root``; reads it to EOF.

    Returns the hashing reader (digest and byte count of the whole stream) and
    the applier (unpacked size, entry count). ``owners``: see ``Owners`` (None as root)."""
    hashing = HashingReader(stream)
    # Decompression and hashing in a thread of their own, beside the parsing (see Prefetcher).
    ahead = Prefetcher(hashing)
    applier = Applier(root, what, owners)
    last = "(start of stream)"
    try:
        tf = TarStream(ahead)
        try:
            ti = tf.next()
        except tarfile.ReadError as e:
            # Python's tarfile refuses an empty stream, and so does TarStream; an empty layer
            # (e.g. docker's WORKDIR layers) may be that or end-of-archive blocks only: accept
            # all-zero streams.
            ahead.drain()
            if hashing.nonzero:
                raise LayerError(f"{what}: not a tar stream ({e})") from None
            return hashing, applier
        while ti is not None:
            last = ti.name
            applier.apply(ti, tf)
            ti = tf.next()
        applier.finish()
        ahead.drain()  # the end-of-archive blocks and padding are part of the diff_id
    except (tarfile.TarError, EOFError) as e:
        raise LayerError(f"{what}: truncated or corrupt tar after entry {last!r} ({e})") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LayerError(f"{what}: no space left on the store's filesystem at entry {last!r};"
                             " free space (e.g. 'ocibox prune') and pull again") from None
        raise LayerError(f"{what}: cannot apply entry {last!r}: {e.strerror or e}") from None
    except (ValueError, OverflowError) as e:  # embedded NUL, an infinite pax mtime and the like
        raise HostileLayerError(f"{what}: refusing entry {last!r}: {e}") from None
    finally:
        ahead.close()
        applier.close()
    return hashing, applier
