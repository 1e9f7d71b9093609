"""Layer rows: what the layer store has published (``layers/<chain hex>/diff`` plus its row)."""

from __future__ import annotations

import time

from ocibox.digest import Digest
from ocibox.store._store import Store

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable

SHORT_LEN = 20  # hex digits of a short link name: 128 layers * len("l/<short>:") = 2944 bytes


def short_name(chain_id: Digest) -> str:
    """The name of the layer's link in ``layers/l/`` (short, so 128 lowerdirs fit one page)."""
    return chain_id.hex[:SHORT_LEN]


def has_layer(store: Store, chain_id: Digest) -> bool:
    """The layer is published: its ``diff/`` directory exists and its row is recorded."""
    if not (store.layer_dir(chain_id) / "diff").is_dir():
        return False
    return layer_row(store, chain_id) is not None


def layer_row(store: Store, chain_id: Digest) -> tuple[str, int] | None:
    """(short link name, unpacked size) of a recorded layer, None if it has no row."""
    row = store.db.execute("SELECT short, size FROM layers WHERE chain_id=?", (str(chain_id),)).fetchone()
    return (row[0], int(row[1])) if row else None


def layer_size(store: Store, chain_id: Digest) -> int:
    """Unpacked bytes of a recorded layer (0 without a row)."""
    row = layer_row(store, chain_id)
    return row[1] if row else 0


def record_layer(store: Store, *, chain_id: Digest, diff_id: Digest, parent: Digest | None, size: int) -> None:
    """The row that makes a published layer directory visible (committed after its rename)."""
    with store.transaction() as db:
        db.execute(
            "INSERT INTO layers(chain_id, diff_id, parent, short, size, created) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(chain_id) DO UPDATE SET diff_id=excluded.diff_id, parent=excluded.parent,"
            " short=excluded.short, size=excluded.size",
            (str(chain_id), str(diff_id), str(parent) if parent else None, short_name(chain_id), size, time.time()),
        )


def delete_layers(store: Store, chain_ids: Iterable[Digest]) -> None:
    """Drop layer rows (inside the caller's transaction): from then on nothing lists or reuses them."""
    store.db.executemany("DELETE FROM layers WHERE chain_id=?", [(str(c),) for c in chain_ids])
