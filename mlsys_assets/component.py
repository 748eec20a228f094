"""The declaration as YAML: a Dagster Component whose `defs.yaml` holds the same fields as `declaration.System`,
with the team's code (schemas, the feature function, the label, the model factory) named by dotted path.

```yaml
type: mlsys_assets.component.MlsysSystem
attributes:
  name: meters
  sources:
    - {name: readings, schema: my_team.schemas:ReadingSchema, key: [meter, reading_at], partition_by: reading_at}
  prediction: {entity: readings, label: load_kw, task: regression}
  features: {build: my_team.features:features, categorical: [meter], numeric: [outdoor_c],
             id_column: reading_id, time_column: reading_hour}
```

Dagster validates the attributes against this model (a wrong key or type names the field), then the declaration
checks the rest exactly as it checks a Python one. `MLSYS_SYSTEMS` may list a `defs.yaml` path beside Python
declarations; the code location builds both the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from mlsys_assets.declaration import Features, Gate, Model, Monitoring, Partitions, Prediction, Source, System

# The sections mirror the declaration's dataclasses; their defaults are the dataclasses' own (one place each).


class SourceModel(dg.Model):
    name: str
    schema_: str = Field(alias="schema", description="The pandera DataFrameModel, `package.module:Class`.")
    key: list[str]
    partition_by: str = Field(description="A column, or `package.module:function` of the rows.")
    format: Literal["csv", "parquet"] = Source.format
    lookup_key: list[str] = Field(default_factory=list)
    check_columns: dict[str, list[str]] = Field(default_factory=dict)
    description: str = Source.description
    row_checks: dict[str, str] = Field(default_factory=dict, description="A rule's row-wise twin, by dotted path.")
    max_quarantine_rate: float | None = None


class PredictionModel(dg.Model):
    entity: str
    label: str
    task: Literal["binary", "regression"] = Prediction.task
    label_from: str | None = None
    label_delay: int = Prediction.label_delay
    outcome_columns: list[str] = Field(default_factory=list)
    threshold: float = Prediction.threshold
    request_columns: list[str] = Field(default_factory=list)


class FeaturesModel(dg.Model):
    build: str
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    id_column: str
    time_column: str
    row: str | None = None


class ModelModel(dg.Model):
    factory: str = Model.factory
    params: dict[str, Any] = Field(default_factory=dict)
    baseline_by: list[str] = Field(default_factory=list)
    window: int = Model.window
    holdout: int = Model.holdout
    registered_name: str = Model.registered_name


class GateModel(dg.Model):
    metric: str = Gate.metric
    min_improvement: float = Gate.min_improvement
    floor: float = Gate.floor
    slices: list[str] = Field(default_factory=list)
    tolerance: float = Gate.tolerance
    slice_min_rows: int = Gate.slice_min_rows


class MonitoringModel(dg.Model):
    ignore: list[str] = Field(default_factory=list)
    day_level: list[str] = Field(default_factory=list)
    drifted_share: float = Monitoring.drifted_share
    day_level_wasserstein: float = Monitoring.day_level_wasserstein
    day_level_missing_rate: float = Monitoring.day_level_missing_rate
    rolling_days: int = Monitoring.rolling_days
    min_live: float = Monitoring.min_live
    max_drop: float = Monitoring.max_drop
    cost_missed: float = Monitoring.cost_missed
    cost_false_alarm: float = Monitoring.cost_false_alarm
    cost_per_unit: float = Monitoring.cost_per_unit
    performance_window: str = Monitoring.performance_window


class PartitionsModel(dg.Model):
    grain: Literal["hourly", "daily", "weekly"] = Partitions.grain
    start: str = Partitions.start
    end: str = Partitions.end


class MlsysSystem(dg.Component, dg.Model, dg.Resolvable):
    """A whole ML system declared in YAML: the engine generates its assets, checks, jobs, sensors and schedules."""

    name: str
    description: str = System.description
    owners: list[str] = Field(default_factory=lambda: list(System.owners))
    sources: list[SourceModel]
    prediction: PredictionModel
    features: FeaturesModel
    model_: ModelModel = Field(default_factory=ModelModel, alias="model")  # `model` is Resolvable's own
    gate: GateModel = GateModel()
    monitoring: MonitoringModel = MonitoringModel()
    partitions: PartitionsModel = PartitionsModel()
    default_data: str | None = None
    demo: list[str] = Field(default_factory=list)

    def to_system(self) -> System:
        """The declaration (checked as a Python one is: a problem names the field)."""
        return System(
            name=self.name, description=self.description, owners=self.owners, default_data=self.default_data,
            demo=self.demo,
            sources=[Source(name=s.name, schema=s.schema_, key=s.key, partition_by=s.partition_by, format=s.format,
                            lookup_key=s.lookup_key, check_columns=s.check_columns, description=s.description,
                            row_checks=s.row_checks, max_quarantine_rate=s.max_quarantine_rate)
                     for s in self.sources],
            prediction=Prediction(**self.prediction.model_dump()),
            features=Features(**self.features.model_dump()),
            model=Model(**self.model_.model_dump()),
            gate=Gate(**self.gate.model_dump()),
            monitoring=Monitoring(**self.monitoring.model_dump()),
            partitions=Partitions(**self.partitions.model_dump()),
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The system's generated graph (resources come from the code location it is loaded into)."""
        from mlsys_assets.engine import system_definitions

        return system_definitions(self.to_system().with_env())


def system_from_yaml(path: str | Path) -> System:
    """The declaration in a `defs.yaml`: its attributes validated and loaded by Dagster's component machinery
    (`Component.from_attributes_dict`), then checked as a declaration."""
    import yaml

    from mlsys_assets.declaration import DeclarationError

    document = yaml.safe_load(Path(path).read_text())
    kind = (document or {}).get("type") if isinstance(document, dict) else None
    if kind not in ("mlsys_assets.component.MlsysSystem", f"{__name__}.{MlsysSystem.__name__}"):
        raise DeclarationError(f"{path}: type must be mlsys_assets.component.MlsysSystem, not {kind!r}")
    try:
        component = MlsysSystem.from_attributes_dict(attributes=document.get("attributes") or {})
    except ValueError as exc:  # pydantic's ValidationError names each field and what is wrong with it
        raise DeclarationError(f"{path}: {exc}") from exc
    return component.to_system()
