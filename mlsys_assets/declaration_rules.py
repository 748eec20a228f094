"""The rules every declaration must satisfy, as 'field: problem' lines (`System` raises them all at once)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING

from mlsys_assets.declaration import FORMATS, GRAINS, METRICS, NAME, TASKS

if TYPE_CHECKING:
    from mlsys_assets.declaration import System


def problems(system: System) -> Iterator[str]:
    """Every rule a declaration must satisfy, as 'field: problem' lines."""
    if not isinstance(system.name, str) or not NAME.match(system.name):
        yield f"name: {system.name!r} must be lower case letters, digits and _ (a letter first, at most 40)"
    names = [s.name for s in system.sources]
    if not names:
        yield "sources: declare at least one source"
    for index, source in enumerate(system.sources):
        where = f"sources[{index}] ({source.name!r})"
        if not isinstance(source.name, str) or not NAME.match(source.name):
            yield f"{where}.name: must be lower case letters, digits and _"
        if names.count(source.name) > 1:
            yield f"{where}.name: declared twice"
        if source.format not in FORMATS:
            yield f"{where}.format: {source.format!r} is not one of {FORMATS}"
        if not source.key:
            yield f"{where}.key: name the columns that identify a row"
        for label, ref in (("schema", source.schema),
                           ("partition_by", None if isinstance(source.partition_by, str) else source.partition_by)):
            problem = ref.problem() if ref is not None else None
            if problem:
                yield f"{where}.{label}: {problem}"
    if system.prediction.entity not in names:
        yield (f"prediction.entity: {system.prediction.entity!r} is not a declared source "
               f"(sources: {', '.join(names)})")
    elif system.entity.is_lookup:
        yield f"prediction.entity: {system.prediction.entity!r} is a lookup source; predict rows of a feed"
    if system.prediction.task not in TASKS:
        yield f"prediction.task: {system.prediction.task!r} is not one of {TASKS}"
    elif system.gate.metric not in METRICS[system.prediction.task]:
        yield (f"gate.metric: {system.gate.metric!r} is not a {system.prediction.task} metric "
               f"({', '.join(METRICS[system.prediction.task])})")
    if system.prediction.label_delay < 0:
        yield "prediction.label_delay: must be 0 or more partitions"
    if not 0 < system.prediction.threshold < 1:
        yield "prediction.threshold: must be strictly between 0 and 1"
    features = system.features
    columns = features.columns
    if not columns:
        yield "features: declare at least one categorical or numeric column"
    for column in sorted({c for c in columns if columns.count(c) > 1}):
        yield f"features: column {column!r} is declared twice"
    reserved = {features.id_column, features.time_column, system.prediction.label, "partition_date", "split"}
    for column in sorted(reserved & set(columns)):
        yield f"features: {column!r} is a key, the label or an engine column, not a feature"
    for column in system.prediction.request_columns:
        if column in system.prediction.outcome_columns:
            yield f"prediction.request_columns: {column!r} is an outcome column; a request cannot know it"
    for source in system.sources:
        if source.max_quarantine_rate is not None and not 0 <= source.max_quarantine_rate <= 1:
            yield f"sources.{source.name}.max_quarantine_rate: must be a share between 0 and 1"
        for name, ref in source.row_checks.items():
            if name not in source.check_columns:
                yield (f"sources.{source.name}.row_checks: {name!r} has no check_columns entry (the server must know "
                       "which columns the rule reads)")
            if ref.problem():
                yield f"sources.{source.name}.row_checks.{name}: {ref.problem()}"
    for column in system.prediction.outcome_columns:
        if column in columns:
            yield f"features: {column!r} is an outcome column (known only afterwards), it cannot be a feature"
    for label, ref in (("features.build", features.build), ("features.row", features.row),
                       ("prediction.label_from", system.prediction.label_from), ("model.factory", system.model.factory),
                       ("default_data", system.default_data)):
        problem = ref.problem() if ref is not None else None
        if problem:
            yield f"{label}: {problem}"
    for label, listed in (("gate.slices", system.gate.slices), ("model.baseline_by", system.model.baseline_by),
                          ("monitoring.ignore", system.monitoring.ignore),
                          ("monitoring.day_level", system.monitoring.day_level)):
        for column in listed:
            if column not in columns:
                yield f"{label}: {column!r} is not a feature column"
    if system.monitoring.performance_window not in ("rolling", "day"):
        yield f"monitoring.performance_window: {system.monitoring.performance_window!r} is not 'rolling' or 'day'"
    if system.demo and len(system.demo) != 2:
        yield "demo: give (first, last) dates, or nothing for the partitions' whole range"
    if system.model.holdout < 1 or system.model.window <= system.model.holdout:
        yield "model.window: must be larger than model.holdout, and holdout at least 1"
    partitions = system.partitions
    if partitions.grain not in GRAINS:
        yield f"partitions.grain: {partitions.grain!r} is not one of {GRAINS}"
    try:
        first, last = date.fromisoformat(partitions.start), date.fromisoformat(partitions.end)
        if last < first:
            yield f"partitions.end: {partitions.end} is before partitions.start {partitions.start}"
        elif partitions.grain == "weekly" and (last - first).days < 7 and not any(
                (first.toordinal() + d) % 7 == 1 for d in range((last - first).days + 1)):  # ordinal % 7 == 1: Monday
            yield f"partitions: weeks start on Mondays and {partitions.start}..{partitions.end} holds none"
    except (TypeError, ValueError) as exc:
        yield f"partitions: start and end must be dates YYYY-MM-DD ({exc})"
