"""Names of everything the engine generates for a system: asset keys `<system>/<asset>`, groups and jobs
`<system>_<name>`, warehouse tables `<system>.<table>` (a DuckDB schema per system). Two systems live side by side."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from dagster import AssetKey, TimeWindowPartitionsDefinition

from mlsys_assets.declaration import System
from mlsys_assets.partitions import partitions_def


@dataclass(frozen=True)
class Names:
    system: System

    @property
    def name(self) -> str:
        return self.system.name

    def key(self, asset: str) -> AssetKey:
        return AssetKey([self.system.name, asset])

    def group(self, stage: str) -> str:
        return f"{self.system.name}_{stage}"

    def job(self, name: str) -> str:
        return f"{self.system.name}_{name}"

    def table(self, table: str) -> str:
        return f"{self.system.name}.{table}"

    @cached_property
    def partitions(self) -> TimeWindowPartitionsDefinition:
        return partitions_def(self.system.partitions)

    @property
    def owners(self) -> list[str]:
        return list(self.system.owners)
