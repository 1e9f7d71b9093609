"""The store: paths, the database (every SQL statement of ocibox is in this package), temporary
work, locks, leases, the trash, and the records read from it. It imports neither the puller, the
layer store nor the runner: everything else builds on it. Ids are typed: images, layers and blobs
are named by ``Digest``; containers by their 64-hex id.

Public surface (loaded lazily: ``ocibox run`` pays only for what it uses)::

    Store(root)                      layout (blob_path, layer_dir, container_dir, mounts, ...), db (one
                                     connection per thread), transaction(), snapshot(), checkpoint(),
                                     mkdtemp(), blobs, lock(), lease(), leased(), clean_tmp()
    default_root() remove_tree() disk_error() tmp_owner_alive()
    ImageRecord LayerRef             record_image() load_image() find_image() touch_image()
                                     image_for_manifest()
    names (Reference rows)           image_named() image_tags() image_digests() name_ref() remove_name()
                                     remove_tags() delete_image() names_of_no_image()
                                     layer_rows_of_no_image() delete_rows_of_no_image()
    has_layer() layer_row() layer_size() record_layer() delete_layers() short_name() SHORT_LEN
    ContainerRecord                  add_container() set_container_pid() finish_container()
                                     get_container() list_containers() live_containers() container_live() stale_containers()
                                     delete_containers() new_container_id() find_container()
                                     update_container() NoSuchContainer
    Refs ImageRow                    what the database references, read in one transaction
    Trash BlobFile                   blob_files() layer_dirs() dangling_links() link_target() make_link()
                                     drop_link() container_dirs() tmp_entries() tmp_busy() claim_tmp()
    DiskUsage du() fs_free()         bytes as du and statvfs count them
"""

from __future__ import annotations

from ocibox._lazy import lazy_getattr

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms of ocibox run)
if TYPE_CHECKING:
    from ocibox.store._containers import (
        ContainerRecord,
        NoSuchContainer,
        add_container,
        container_live,
        delete_containers,
        find_container,
        finish_container,
        get_container,
        list_containers,
        live_containers,
        new_container_id,
        set_container_pid,
        stale_containers,
        update_container,
        using_containers,
    )
    from ocibox.store._du import DiskUsage, du, fs_free
    from ocibox.store._gc import (
        BlobFile,
        Trash,
        blob_files,
        claim_tmp,
        container_dirs,
        dangling_links,
        drop_link,
        layer_dirs,
        link_target,
        make_link,
        tmp_busy,
        tmp_entries,
    )
    from ocibox.store._images import (
        ImageRecord,
        LayerRef,
        delete_image,
        delete_rows_of_no_image,
        find_image,
        image_digests,
        image_for_manifest,
        image_named,
        image_tags,
        layer_rows_of_no_image,
        load_image,
        name_ref,
        names_of_no_image,
        record_image,
        remove_name,
        remove_tags,
        touch_image,
    )
    from ocibox.store._layers import (
        SHORT_LEN,
        delete_layers,
        has_layer,
        layer_row,
        layer_size,
        record_layer,
        short_name,
    )
    from ocibox.store._refs import ImageRow, Refs
    from ocibox.store._store import Store, default_root, disk_error, remove_tree, tmp_owner_alive

_TABLE = {
    **dict.fromkeys(("ContainerRecord", "add_container", "delete_containers", "finish_container", "get_container",
                     "list_containers", "live_containers", "container_live", "new_container_id", "set_container_pid",
                     "stale_containers", "NoSuchContainer", "find_container", "update_container", "using_containers"),
                    "_containers"),
    **dict.fromkeys(("DiskUsage", "du", "fs_free"), "_du"),
    **dict.fromkeys(("BlobFile", "Trash", "blob_files", "claim_tmp", "container_dirs", "dangling_links",
                     "drop_link", "layer_dirs", "link_target", "make_link", "tmp_busy", "tmp_entries"), "_gc"),
    **dict.fromkeys(("ImageRecord", "LayerRef", "delete_image", "delete_rows_of_no_image", "find_image",
                     "image_digests", "image_for_manifest", "image_named", "image_tags", "layer_rows_of_no_image",
                     "load_image", "name_ref", "names_of_no_image", "record_image", "remove_name", "remove_tags",
                     "touch_image"), "_images"),
    **dict.fromkeys(("SHORT_LEN", "delete_layers", "has_layer", "layer_row", "layer_size", "record_layer",
                     "short_name"), "_layers"),
    **dict.fromkeys(("ImageRow", "Refs"), "_refs"),
    **dict.fromkeys(("Store", "default_root", "disk_error", "remove_tree", "tmp_owner_alive"), "_store"),
}

__getattr__ = lazy_getattr(__name__, _TABLE)

__all__ = [
    "SHORT_LEN",
    "BlobFile",
    "ContainerRecord",
    "DiskUsage",
    "ImageRecord",
    "ImageRow",
    "LayerRef",
    "NoSuchContainer",
    "Refs",
    "Store",
    "Trash",
    "add_container",
    "blob_files",
    "claim_tmp",
    "container_dirs",
    "container_live",
    "dangling_links",
    "default_root",
    "delete_containers",
    "delete_image",
    "delete_layers",
    "delete_rows_of_no_image",
    "disk_error",
    "drop_link",
    "du",
    "find_container",
    "find_image",
    "finish_container",
    "fs_free",
    "get_container",
    "has_layer",
    "image_digests",
    "image_for_manifest",
    "image_named",
    "image_tags",
    "layer_dirs",
    "layer_row",
    "layer_rows_of_no_image",
    "layer_size",
    "link_target",
    "list_containers",
    "live_containers",
    "load_image",
    "make_link",
    "name_ref",
    "names_of_no_image",
    "new_container_id",
    "record_image",
    "record_layer",
    "remove_name",
    "remove_tags",
    "remove_tree",
    "set_container_pid",
    "short_name",
    "stale_containers",
    "tmp_busy",
    "tmp_entries",
    "tmp_owner_alive",
    "touch_image",
    "update_container",
    "using_containers",
]
