"""The lookup sources' rows as the pipeline published them (`<online>/<system>/<source>/<partition>.parquet`), held in
memory: the server never opens the warehouse (DuckDB allows one process at a time).

`refresh` (the server's poller) reads a partition's file when it is new or republished (a new inode: files are
replaced atomically), so a request never touches the disk. Two views of the same rows:
- `index(source)`: key values (a tuple in `lookup_key` order) -> the row, for the declared row-wise features (the
  first row of a key wins, in partition order, as a table join keeps the first);
- `frames(source, keys)`: the partitions' rows as a table, for the feature definition's table executor.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsys_assets.core.online import file_signature, lookup_path

if TYPE_CHECKING:
    import pandas as pd

    from mlsys_assets.declaration import System


class Recorder(Mapping):
    """A lookup index as the row-wise features see it, remembering whether their lookups found a row."""

    def __init__(self, rows: Mapping[tuple, dict[str, Any]]) -> None:
        self.rows, self.found, self.missed = rows, 0, 0

    def __getitem__(self, key: tuple) -> dict[str, Any]:
        return self.rows[key]

    def get(self, key: tuple, default: Any = None) -> Any:
        row = self.rows.get(key)
        if row is None:
            self.missed += 1
            return default
        self.found += 1
        return row

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def source(self) -> str:
        return "missing" if self.missed else "published"


class Carried(Mapping):
    """The lookup row a request carried, answering every key: the row-wise features look a key up and get it."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.source = "request"

    def __getitem__(self, key: tuple) -> dict[str, Any]:
        return self.row

    def get(self, key: tuple, default: Any = None) -> Any:
        return self.row

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 1


class LookupStore:
    """Every published partition of each lookup source of one system."""

    def __init__(self, system: System, directory: Path) -> None:
        self.system, self.directory = system, directory
        self._files: dict[str, dict[str, tuple[tuple | None, pd.DataFrame]]] = {s.name: {} for s in system.lookups}
        self._index: dict[str, dict[tuple, dict[str, Any]]] = {s.name: {} for s in system.lookups}
        self._lock = threading.Lock()

    def refresh(self) -> int:
        """Read what was published or republished since the last call; returns the files read."""
        import pandas as pd

        read = 0
        for source in self.system.lookups:
            folder = lookup_path(self.system.name, source.name, "x", self.directory).parent
            paths = {p.stem: p for p in folder.glob("*.parquet")} if folder.is_dir() else {}
            files = dict(self._files[source.name])
            changed = set(files) - set(paths)
            for key, path in paths.items():
                signature = file_signature(path)
                if key not in files or files[key][0] != signature:
                    try:
                        files[key] = (signature, pd.read_parquet(path))
                    except (OSError, ValueError):  # being replaced right now: read it at the next refresh
                        continue
                    changed.add(key)
                    read += 1
            for key in set(files) - set(paths):
                del files[key]
            if changed:
                index: dict[tuple, dict[str, Any]] = {}
                for key in sorted(files):
                    for row in _records(files[key][1]):
                        index.setdefault(tuple(row.get(c) for c in source.lookup_key), row)
                with self._lock:  # both views swapped at once
                    self._files[source.name], self._index[source.name] = files, index
        return read

    def index(self, source: str) -> dict[tuple, dict[str, Any]]:
        return self._index[source]

    def partitions(self, source: str) -> list[str]:
        return sorted(self._files[source])

    def frames(self, source: str, keys: Iterable[str]) -> pd.DataFrame:
        """The published rows of these partitions (an empty table of the source's columns when none)."""
        import pandas as pd

        from mlsys_assets.core.sources import columns_of

        files = self._files[source]
        parts = [files[key][1] for key in sorted(set(keys)) if key in files]
        if parts:
            return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        return pd.DataFrame(columns=list(columns_of(self.system.source(source)).names))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as Python values, missing ones None (what the row-wise features expect of a lookup row)."""
    columns = {}
    for name in frame.columns:
        values = frame[name]
        columns[name] = values.astype(object).where(values.notna(), None).tolist()
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
