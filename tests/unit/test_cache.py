"""The cache verbs against a store populated directly (blobs written with Store.write_blob, layer
directories and rows created as the unpacker publishes them, images recorded with record_image).

Real files, a real SQLite database and real processes (a live ``sleep`` stands for a running
container); nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from ocibox import cache
from ocibox import store as ocistore
from ocibox.cli import df_table, images_table, prune_lines, rmi_lines
from ocibox.digest import Digest
from ocibox.errors import ImageNotFound, InUseError, UsageError
from ocibox.image import ImageConfig, Manifest, Platform, chain_ids
from ocibox.reference import Reference
from ocibox.settings import Settings
from ocibox.store import Store, add_container, du, record_image
from ocibox.units import human_duration, human_size, parse_duration, parse_size, parse_time, parse_until

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def publish_layer(store: Store, cid: Digest, diff_id: Digest, parent: Digest | None, files: dict[str, bytes]) -> None:
    """What the unpacker does: a tree under layers/<hex>/diff, the l/ link, then the row."""
    d = store.layer_dir(cid) / "diff"
    if d.exists():
        return
    d.mkdir(parents=True)
    for name, data in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    ro = d / "ro"
    ro.mkdir()
    (ro / "f").write_bytes(b"x")
    os.chmod(ro, 0o555)  # published layers hold read-only directories
    short = cid.hex[:20]
    os.symlink(f"../{cid.hex}/diff", store.links / short)
    with store.transaction() as db:
        db.execute("INSERT INTO layers(chain_id, diff_id, parent, short, size, created) VALUES (?,?,?,?,?,?)",
                   (str(cid), str(diff_id), str(parent) if parent else None, short,
                    sum(len(v) for v in files.values()), time.time()))


def make_image(store: Store, ref: str, layers: list[bytes], *, created: str = "2024-01-01T00:00:00Z") -> str:
    """An image whose layer i holds file ``f`` with ``layers[i]`` (content decides the diff id)."""
    diff_ids = [Digest.of_bytes(b"tar:" + c) for c in layers]
    cids = chain_ids(diff_ids)
    for i, (cid, c) in enumerate(zip(cids, layers, strict=True)):
        publish_layer(store, cid, diff_ids[i], cids[i - 1] if i else None, {"f": c, "big": c * 2000})
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                         "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
                         "config": {"Cmd": ["/bin/sh"]}}).encode()
    cdig = Digest.of_bytes(config)
    store.write_blob(cdig, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": str(cdig), "size": len(config)},
                           "layers": [{"mediaType": GZ, "digest": str(Digest.of_bytes(b"gz:" + c)), "size": len(c) + 10}
                                      for c in layers]}).encode()
    mdig = Digest.of_bytes(manifest)
    store.write_blob(mdig, manifest)
    r = Reference.parse(ref)
    record_image(store, r, pinned=r.digest or mdig, manifest_digest=mdig, manifest=Manifest.parse(manifest, "m"),
                 config_digest=cdig, config=ImageConfig.parse(config), platform=Platform("linux", "amd64"),
                 size=sum(len(c) for c in layers))
    return str(cdig)


def layer_hexes(layers: list[bytes]) -> list[str]:
    return [c.hex for c in chain_ids([Digest.of_bytes(b"tar:" + c) for c in layers])]


@pytest.fixture
def env(tmp_path: Path) -> tuple[Settings, Store]:
    s = Settings(root=tmp_path / "store")
    return s, Store(s.root).ensure()


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def du_cmd(path: Path) -> int:
    out = subprocess.run(["du", "-sx", "--block-size=1", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


# ----------------------------------------------------------------------------- helpers


def test_sizes_and_durations() -> None:
    assert parse_size("512") == 512
    assert parse_size("1k") == parse_size("1KB") == parse_size("1KiB") == 1024
    assert parse_size("1.5g") == 1536 * 1024 * 1024
    for bad in ("", "ten", "1x", "-1m"):
        with pytest.raises(UsageError):
            parse_size(bad)
    assert parse_duration("10m") == 600
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5s") == 1.5
    for bad in ("", "10", "h", "10d", "5m x"):
        with pytest.raises(UsageError):
            parse_duration(bad)
    assert parse_until("10m", now=1000.0) == 400.0
    assert parse_until("1700000000") == 1700000000.0
    assert parse_until("2024-01-01T00:00:00Z") == 1704067200.0
    assert parse_time("2024-01-01T00:00:00.123456789Z") == pytest.approx(1704067200.123456)
    assert human_size(1234567) == "1.23MB"
    assert human_size(999) == "999B"
    assert human_size(4270) == "4.27kB"
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(90) == "About a minute"
    assert human_duration(3 * 3600) == "3 hours"
    assert human_duration(3 * 86400) == "3 days"
    assert human_duration(800 * 86400) == "2 years"


# ----------------------------------------------------------------------------- images, inspect


def test_images_lists_complete_images_only(env: tuple[Settings, Store]) -> None:
    s, store = env
    iid = make_image(store, "127.0.0.1:5000/app:1", [b"a", b"b"])
    make_image(store, "busybox", [b"c"])
    rows = cache.list_images(s, all_=False)
    assert {(r["Repository"], r["Tag"]) for r in rows} == {("127.0.0.1:5000/app", "1"), ("busybox", "latest")}
    app = next(r for r in rows if r["Tag"] == "1")
    assert app["ID"] == iid and app["Size"] == 2 + 2 * 2000 * 1
    # A layer directory gone (a crash, a bad disk): the image is no longer listed.
    ocistore.remove_tree(store.layers / layer_hexes([b"c"])[0])
    assert [r["Repository"] for r in cache.list_images(s, all_=False)] == ["127.0.0.1:5000/app"]

    lines = images_table(cache.list_images(s, all_=False), digests=True)
    assert lines[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:2] == ["127.0.0.1:5000/app", "1"] and iid[7:19] in lines[1]
    assert images_table(cache.list_images(s, all_=False), quiet=True) == [iid[7:19]]


def test_moved_tag_leaves_a_dangling_image(env: tuple[Settings, Store]) -> None:
    s, store = env
    old = make_image(store, "app:1", [b"old"])
    new = make_image(store, "app:1", [b"new"])
    assert [r["ID"] for r in cache.list_images(s, all_=False)] == [new]
    rows = cache.list_images(s, all_=True)
    assert {(r["ID"], r["Repository"], r["Tag"]) for r in rows} == {(new, "app", "1"), (old, "<none>", "<none>")}


def test_inspect(env: tuple[Settings, Store]) -> None:
    s, store = env
    iid = make_image(store, "app:1", [b"a", b"b"])
    info = cache.inspect_image(s, "app:1")
    assert info["Id"] == iid and info["RepoTags"] == ["app:1"]
    assert [x["ChainID"] for x in info["Layers"]] == ["sha256:" + h for h in layer_hexes([b"a", b"b"])]
    assert info["Layers"][0]["Digest"] == str(Digest.of_bytes(b"gz:a"))
    assert info["Layers"][1]["DiffID"] == str(Digest.of_bytes(b"tar:b"))
    assert info["Manifest"]["config"]["digest"] == iid and info["Config"]["Cmd"] == ["/bin/sh"]
    assert cache.inspect_image(s, iid[7:19])["Id"] == iid
    with pytest.raises(ImageNotFound):
        cache.inspect_image(s, "nope:1")


# ----------------------------------------------------------------------------- rmi


def test_rmi_untags_then_deletes_what_nothing_else_uses(env: tuple[Settings, Store]) -> None:
    s, store = env
    a = make_image(store, "app:1", [b"base", b"a"])
    make_image(store, "other:1", [b"base", b"o"])
    db = store.db
    db.execute("INSERT INTO tags(name, tag, image_id) VALUES ('docker.io/library/app', '2', ?)", (a,))
    assert rmi_lines(cache.remove_images(s, ["app:2"], force=False)) == ["Untagged: app:2"]
    base, la = layer_hexes([b"base", b"a"])
    blobs_before = set(os.listdir(store.blobs))
    out = rmi_lines(cache.remove_images(s, ["app:1"], force=False))
    assert out[0] == "Untagged: app:1"
    assert out[1].startswith("Untagged: app@sha256:")
    assert f"Deleted: {a}" in out and f"Deleted: sha256:{la}" in out
    assert not (store.layers / la).exists() and (store.layers / base / "diff").is_dir()
    assert not (store.links / la[:20]).exists()
    assert a[7:] not in os.listdir(store.blobs) and len(blobs_before) - len(os.listdir(store.blobs)) == 2
    assert db.execute("SELECT COUNT(*) FROM layers").fetchone()[0] == 2
    assert os.listdir(store.tmp) == []  # the trash is emptied
    assert cache.verify(s, repair=False) == []
    with pytest.raises(ImageNotFound):
        cache.remove_images(s, ["app:1"], force=False)


def test_rmi_is_all_or_nothing_and_refused_for_a_running_container(env: tuple[Settings, Store], sleeper: subprocess.Popen[bytes]) -> None:
    s, store = env
    a = make_image(store, "app:1", [b"a"])
    b = make_image(store, "b:1", [b"b"])
    with pytest.raises(ImageNotFound):
        cache.remove_images(s, ["b:1", "missing:1"], force=False)
    assert len(cache.list_images(s, all_=False)) == 2  # nothing was removed
    cid = ocistore.new_container_id()
    add_container(store, cid, None, Digest.parse(a), ["sleep"])
    ocistore.set_container_pid(store, cid, sleeper.pid)
    with pytest.raises(InUseError, match="running container " + cid[:12]):
        cache.remove_images(s, ["app:1"], force=True)
    with pytest.raises(InUseError):
        cache.remove_images(s, [a[7:19]], force=True)
    assert {r["ID"] for r in cache.list_images(s, all_=False)} == {a, b}
    # Once the container's process is gone, the image can go.
    sleeper.kill()
    sleeper.wait()
    assert f"Deleted: {a}" in rmi_lines(cache.remove_images(s, ["app:1"], force=False))


def test_rmi_by_id_of_an_image_in_several_repositories_needs_force(env: tuple[Settings, Store]) -> None:
    s, store = env
    a = make_image(store, "app:1", [b"a"])
    make_image(store, "copy:1", [b"a"])
    with pytest.raises(UsageError, match="must be forced"):
        cache.remove_images(s, [a[7:19]], force=False)
    out = rmi_lines(cache.remove_images(s, [a[7:19]], force=True))
    assert "Untagged: app:1" in out and "Untagged: copy:1" in out and f"Deleted: {a}" in out
    assert cache.list_images(s, all_=True) == []


def test_rmi_keeps_leased_layers(env: tuple[Settings, Store]) -> None:
    s, store = env
    make_image(store, "app:1", [b"a"])
    (h,) = layer_hexes([b"a"])
    with store.lease("pull", [Digest("sha256", h)]):
        out = rmi_lines(cache.remove_images(s, ["app:1"], force=False))
        assert f"Deleted: sha256:{h}" not in out
        assert (store.layers / h / "diff").is_dir()
        # prune keeps it too while the lease lives...
        cache.prune(s, all_=True, dry_run=False)
        assert (store.layers / h / "diff").is_dir()
    # ...and removes it once the lease is gone.
    out = prune_lines(cache.prune(s, all_=True, dry_run=False))
    assert f"deleted: sha256:{h}" in out and not (store.layers / h).exists()


# ----------------------------------------------------------------------------- prune


def test_prune_plan_dry_run_and_leftovers(env: tuple[Settings, Store], sleeper: subprocess.Popen[bytes]) -> None:
    s, store = env
    old = make_image(store, "app:1", [b"base", b"old"])
    new = make_image(store, "app:1", [b"base", b"new"])
    keep = make_image(store, "keep:1", [b"k"])
    # Crash leftovers: a tmp dir of a dead process, a layer dir with no row, a dead container.
    dead = dead_pid()
    leftover = store.tmp / f"{dead}.12345.layer-x"
    (leftover / "diff").mkdir(parents=True)
    (leftover / "diff" / "junk").write_bytes(b"j" * 100000)
    rowless = store.layers / ("ab" * 32)
    (rowless / "diff").mkdir(parents=True)
    cdir = store.container_dir("c" * 64)
    (cdir / "upper").mkdir(parents=True)
    (cdir / "upper" / "data").write_bytes(b"u" * 50000)
    with store.transaction() as db:
        db.execute("INSERT INTO containers(id, name, image_id, pid, pid_start, state, command, created)"
                   " VALUES (?,?,?,?,?,?,?,?)", ("c" * 64, "dead", new, dead, 777, "running", "[]", time.time()))
    # A live container keeps 'keep' even with --all.
    live = ocistore.new_container_id()
    add_container(store, live, None, Digest.parse(keep), ["sleep"])
    ocistore.set_container_pid(store, live, sleeper.pid)

    def tree() -> list[str]:
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")
                      if not p.name.startswith("ocibox.db") and p.parent.name != "locks")

    state = tree()
    plan = prune_lines(cache.prune(s, all_=True, dry_run=True))
    assert tree() == state
    assert "Total reclaimable space" in plan[-1]
    out = prune_lines(cache.prune(s, all_=True, dry_run=False))
    assert out[:-1] == plan[:-1]  # the dry run printed the same plan
    assert "c" * 64 in out and f"deleted: {old}" in out and f"deleted: {new}" in out
    assert f"deleted: {keep}" not in out and f"tmp/{leftover.name}" in out
    assert f"deleted: layers/{'ab' * 32} (no database row: leftover of interrupted work)" in out
    assert out[-1].startswith("Total reclaimed space:")
    assert {r["ID"] for r in cache.list_images(s, all_=True)} == {keep}
    assert not leftover.exists() and not rowless.exists() and not cdir.exists()
    assert os.listdir(store.tmp) == []
    assert sorted(os.listdir(store.layers)) == sorted(["l", *layer_hexes([b"k"])])
    assert [c.id for c in ocistore.list_containers(store)] == [live]
    assert cache.verify(s, repair=False) == []


def test_prune_without_all_removes_only_dangling(env: tuple[Settings, Store]) -> None:
    s, store = env
    old = make_image(store, "app:1", [b"old"])
    new = make_image(store, "app:1", [b"new"])
    other = make_image(store, "other@sha256:" + "0" * 64, [b"o"])  # pulled by digest: not dangling
    out = prune_lines(cache.prune(s, all_=False, dry_run=False))
    assert f"deleted: {old}" in out
    assert {r["ID"] for r in cache.list_images(s, all_=True)} == {new, other}
    assert not (store.layers / layer_hexes([b"old"])[0]).exists()


def test_prune_until_and_keep_storage(env: tuple[Settings, Store]) -> None:
    s, store = env
    ids = [make_image(store, f"img{i}:1", [bytes([65 + i]) * 3000]) for i in range(4)]
    now = time.time()
    with store.transaction() as db:  # img0 used 3 days ago ... img3 just now
        for i, iid in enumerate(ids):
            db.execute("UPDATE images SET last_used=? WHERE id=?", (now - (3 - i) * 86400, iid))
    out = prune_lines(cache.prune(s, all_=True, dry_run=False, until=cache.parse_prune_filters(["until=36h"])))
    assert f"deleted: {ids[0]}" in out and f"deleted: {ids[1]}" in out and f"deleted: {ids[2]}" not in out
    with pytest.raises(UsageError):
        cache.parse_prune_filters(["label=x"])
    # Fit the store to its size minus a bit: the least recently used image (img2) goes, img3 stays.
    size = cache.disk_usage(s, verbose=False)["TotalSize"]
    out = prune_lines(cache.prune(s, all_=False, dry_run=False, keep_storage=size - 4096))
    assert f"deleted: {ids[2]} (least recently used, for --keep-storage)" in out
    assert [r["ID"] for r in cache.list_images(s, all_=False)] == [ids[3]]
    assert cache.disk_usage(s, verbose=False)["TotalSize"] <= size - 4096


# ----------------------------------------------------------------------------- system df


def test_disk_usage_adds_up_to_du(env: tuple[Settings, Store], sleeper: subprocess.Popen[bytes]) -> None:
    s, store = env
    a = make_image(store, "app:1", [b"base" * 1000, b"a" * 5000])
    make_image(store, "b:1", [b"base" * 1000, b"b" * 7000])
    make_image(store, "c:1", [b"c" * 9000])
    cache.remove_images(s, ["c:1"], force=False)
    make_image(store, "d:1", [b"d" * 100])
    with store.transaction() as db:  # an unused layer (a pull killed before it recorded its image)
        db.execute("DELETE FROM image_layers WHERE image_id=(SELECT image_id FROM tags WHERE name LIKE '%/d')")
    d = store.layers / layer_hexes([b"base" * 1000])[0] / "diff"
    os.chmod(d, 0o755)
    os.link(d / "big", d / "hardlink")  # hard links count once, as du counts them
    os.chmod(d, 0o555)
    cid = ocistore.new_container_id()
    add_container(store, cid, None, Digest.parse(a), ["sleep"])
    ocistore.set_container_pid(store, cid, sleeper.pid)
    (store.container_dir(cid) / "upper").mkdir(parents=True)
    (store.container_dir(cid) / "upper" / "x").write_bytes(b"x" * 20000)
    (store.tmp / f"{dead_pid()}.1.x").write_bytes(b"t" * 9000)
    data = cache.disk_usage(s, verbose=True)
    assert data["TotalSize"] == du_cmd(store.root)
    types = {t["Type"]: t for t in data["Types"]}
    assert types["Images"]["Total"] == 3 and types["Images"]["Active"] == 1
    assert types["Containers"]["Active"] == 1 and types["Containers"]["Size"] == du_cmd(store.container_dir(cid))
    assert types["Interrupted and in-flight work"]["Reclaimable"] > 9000
    assert data["Layers"]["SharedCount"] == 1
    assert data["Layers"]["SharedSize"] == du_cmd(store.layers / layer_hexes([b"base" * 1000])[0])
    assert data["Layers"]["UnusedCount"] == 1
    app = next(i for i in data["Images"] if i["Repository"] == "app")
    assert app["SharedSize"] == data["Layers"]["SharedSize"] and app["Containers"] == 1
    lines = df_table(data)
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert any(line.startswith("Images") for line in lines)


# ----------------------------------------------------------------------------- verify


def test_verify_finds_and_repairs(env: tuple[Settings, Store]) -> None:
    s, store = env
    a = make_image(store, "app:1", [b"base", b"a"])
    b = make_image(store, "b:1", [b"base", b"b"])
    c = make_image(store, "c:1", [b"c"])
    assert cache.verify(s, repair=False) == []
    # A corrupt config blob, a layer directory gone, a directory with no row, a broken link.
    (store.blobs / a[7:]).write_bytes(b"garbage")
    ocistore.remove_tree(store.layers / layer_hexes([b"base", b"b"])[1])
    (store.layers / ("cd" * 32) / "diff").mkdir(parents=True)
    (hc,) = layer_hexes([b"c"])
    os.unlink(store.links / hc[:20])
    problems = cache.verify(s, repair=False)
    text = "\n".join(problems)
    assert f"blob {a}: content does not match its digest" in text
    assert f"image {a[7:19]} (app:1" in text and f"image {b[7:19]} (b:1" in text
    assert f"layers/{'cd' * 32}: a directory with no database row" in text
    assert f"link layers/l/{hc[:20]} is missing" in text
    assert len(problems) == 6, problems
    repaired = cache.verify(s, repair=True)
    assert len(repaired) == len(problems)
    assert cache.verify(s, repair=False) == []
    assert [r["ID"] for r in cache.list_images(s, all_=True)] == [c]
    assert os.readlink(store.links / hc[:20]) == f"../{hc}/diff"
    assert not (store.layers / ("cd" * 32)).exists()


def test_verify_and_prune_leave_a_pull_in_flight_alone(env: tuple[Settings, Store]) -> None:
    """A pull publishes a layer directory before its row, under a lease: neither verify nor
    prune may take it for a leftover."""
    s, store = env
    h = "ef" * 32
    with store.lease("pull", [Digest("sha256", h)]):
        (store.layers / h / "diff").mkdir(parents=True)
        os.symlink(f"../{h}/diff", store.links / f".{h[:20]}.{os.getpid()}.1")
        assert cache.verify(s, repair=True) == []
        cache.prune(s, all_=True, dry_run=False)
        assert (store.layers / h / "diff").is_dir()
    assert cache.verify(s, repair=False) == [f"layers/{h}: a directory with no database row (leftover of interrupted work)"]


def test_stale_containers_are_cleaned(env: tuple[Settings, Store]) -> None:
    s, store = env
    iid = make_image(store, "app:1", [b"a"])
    with store.transaction() as db:
        db.execute("INSERT INTO containers(id, name, image_id, pid, pid_start, state, command, created)"
                   " VALUES (?,?,?,?,?,?,?,?)", ("d" * 64, "x", iid, dead_pid(), 5, "running", "[]", time.time()))
    (store.container_dir("d" * 64) / "work" / "work").mkdir(parents=True)
    os.chmod(store.container_dir("d" * 64) / "work" / "work", 0)
    assert any("recorded as running but its process" in p for p in cache.verify(s, repair=False))
    assert cache.clean_stale_containers(store) == ["d" * 64]
    assert not store.container_dir("d" * 64).exists() and ocistore.list_containers(store) == []
    assert cache.verify(s, repair=False) == []
    assert du(store.containers) == du_cmd(store.containers)


def test_a_crash_between_rows_and_rename_leaves_garbage_never_a_broken_image(
        env: tuple[Settings, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection (a fake for what cannot be timed reliably: dying exactly after the commit):
    the first move into the trash fails. The rows are gone, so nothing lists the image; the
    directory left behind is a leftover that verify names and prune removes."""
    s, store = env
    make_image(store, "app:1", [b"a"])
    (h,) = layer_hexes([b"a"])

    def die(self: object, path: Path) -> bool:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ocistore.Trash, "take", die)
    with pytest.raises(KeyboardInterrupt):
        cache.remove_images(s, ["app:1"], force=False)
    monkeypatch.undo()
    assert cache.list_images(s, all_=True) == []
    assert (store.layers / h / "diff").is_dir()
    assert cache.verify(s, repair=False) == [
        f"layers/{h}: a directory with no database row (leftover of interrupted work)"]
    out = prune_lines(cache.prune(s, all_=False, dry_run=False))
    assert f"deleted: layers/{h} (no database row: leftover of interrupted work)" in out
    assert cache.verify(s, repair=False) == [] and not (store.layers / h).exists()


def test_remove_tree_removes_symlinks_without_following_them(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("x")
    c = tmp_path / "c"
    (c / "work" / "work").mkdir(parents=True)
    os.chmod(c / "work" / "work", 0)  # overlayfs leaves its work dir mode 000
    (c / "upper" / "etc").mkdir(parents=True)
    (c / "upper" / "etc" / "hostname").write_text("x")
    (c / "upper" / "dirlink").symlink_to(outside / "keep")
    (c / "upper" / "filelink").symlink_to(outside / "keep" / "file")
    (c / "upper" / "dangling").symlink_to(tmp_path / "absent")
    ocistore.remove_tree(c)
    assert not os.path.lexists(c) and (outside / "keep" / "file").read_text() == "x"
    ocistore.remove_tree(tmp_path / "absent")  # nothing there: no error
