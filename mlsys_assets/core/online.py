"""The online store: what the pipeline publishes for `mlsys serve`, where the server writes back, and nothing else.

DuckDB lets one process open the warehouse file and no other process open it at all meanwhile, so the server never
touches the warehouse. The pipeline publishes what serving needs as files under MLSYS_HOME, each written to a
temporary name and renamed into place (a reader sees the old file or the new one, never half of one):

    <online>/<system>/<lookup source>/<partition>.parquet   a lookup source's validated rows (MLSYS_ONLINE_DIR)
    <online>/<system>/baseline_rates.parquet                the fallback model's rates

and the server appends every answer as a JSON line under `<log>/<system>/<partition>/` (MLSYS_PREDICTION_LOG_DIR;
`core.server.predictionlog`), which the system's `served_predictions` asset ingests. No Dagster import: the server
imports this.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _home_path(env: str, relative: str) -> Path:
    from mlsys_assets.settings import home_path

    return Path(home_path(env, relative))


def online_dir() -> Path:
    """MLSYS_ONLINE_DIR, else `$MLSYS_HOME/online`."""
    return _home_path("MLSYS_ONLINE_DIR", "online")


def prediction_log_dir() -> Path:
    """MLSYS_PREDICTION_LOG_DIR, else `$MLSYS_HOME/prediction_log`."""
    return _home_path("MLSYS_PREDICTION_LOG_DIR", "prediction_log")


def lookup_path(system: str, source: str, partition: str, directory: Path | None = None) -> Path:
    """`<online>/<system>/<lookup source>/<partition>.parquet`."""
    return (directory or online_dir()) / system / source / f"{partition}.parquet"


def baseline_path(directory: Path | None, system: str) -> Path:
    return (directory or online_dir()) / system / "baseline_rates.parquet"


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> Path:
    """Write beside the target and rename over it, so a reader never opens a half-written file."""
    from mlsys_assets.core.files import atomic_write

    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def publish_lookup(path: Path, rows: pd.DataFrame, columns: Sequence[str]) -> Path:
    """A lookup source's validated rows of one partition (its declared columns), for the server to join."""
    return write_parquet_atomically(rows.loc[:, [c for c in columns if c in rows]].reset_index(drop=True), path)


def publish_baseline(rates: pd.DataFrame, system: str, directory: Path | None = None) -> Path:
    """The baseline's rates (`RateBaseline.to_frame()`), the server's answer when no champion can be loaded."""
    return write_parquet_atomically(rates.reset_index(drop=True), baseline_path(directory, system))


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is republished (os.replace gives a new inode), or None if it is absent."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size
