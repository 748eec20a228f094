"""The declaration API: one `System` object says everything particular to one ML system.

The engine generates the whole asset graph from it (see `mlsys_assets.systems.build_system_defs`). A declaration
holds names, numbers and references to the team's own code (pandera schemas, the feature function, the label
function, the model factory) as `Ref`s: a dotted path `"package.module:attribute"` or the object itself. A dotted
path is imported only when a run needs it, so loading the code location never imports pandas, pandera or
scikit-learn. Everything is checked when the declaration is built, and an error names the field:
`System 'shop': prediction.entity: 'orders' is not a declared source (sources: sales, weather)`.

Every number of a declaration is a setting: its value here is the default, `MLSYS_<SYSTEM>_<FIELD>` overrides it
(`MLSYS_FLIGHTS_WINDOW=30`), and `mlsys settings` prints them all (`System.settings_rows`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
GRAINS = ("hourly", "daily", "weekly")
TASKS = ("binary", "regression")
FORMATS = ("csv", "parquet")
# metric -> whether higher is better; the gate's direction and the performance check follow from it
METRICS: dict[str, dict[str, bool]] = {
    "binary": {"roc_auc": True, "average_precision": True, "log_loss": False, "brier": False,
               "precision": True, "recall": True},
    "regression": {"mae": False, "rmse": False, "r2": True},
}


class DeclarationError(ValueError):
    """A declaration that cannot work; the message names the system and the field."""


@dataclass(frozen=True, eq=False)
class Ref:
    """A reference to the team's own code: `"package.module:attribute"`, imported on first use. Two references
    are equal when they name the same object (a path and the object it names are the same reference)."""

    target: Any

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __post_init__(self) -> None:
        if isinstance(self.target, Ref):
            object.__setattr__(self, "target", self.target.target)

    @property
    def path(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}:{self.target.__qualname__}"

    def problem(self) -> str | None:
        """What is wrong with the reference, checked without importing anything heavy (None when fine)."""
        if not isinstance(self.target, str):
            return None if callable(self.target) or isinstance(self.target, type) else "is not callable"
        module, _, attribute = self.target.partition(":")
        if not module or not attribute:
            return f"{self.target!r} is not a dotted path 'package.module:attribute'"
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        return None if found is not None else f"module {module!r} of {self.target!r} cannot be found"

    def resolve(self) -> Any:
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
        return value


def _ref(value: Any) -> Ref | None:
    return None if value is None else value if isinstance(value, Ref) else Ref(value)


@dataclass(frozen=True)
class Partitions:
    """How time is cut into partitions; every dated asset of the system shares them."""

    grain: Literal["hourly", "daily", "weekly"] = "daily"
    start: str = "2013-01-01"
    end: str = "2013-12-31"


@dataclass(frozen=True)
class Source:
    """A feed: one landing file per partition, `<landing>/<system>/<name>/<partition key>.<format>`.

    `schema` is a pandera `DataFrameModel`: its column types type the landing files and the warehouse tables, its
    rules split the rows into validated and quarantined. `partition_by` places a row in its partition: a column
    holding a date or timestamp, or a `Ref` to a function of the rows returning one. `lookup_key` makes the source
    a context lookup: scoring finds its rows by that key (what weather is to flights), and the pipeline publishes
    them for the server. `check_columns` names the columns each dataframe-wide rule reads, so a quarantine reason
    shows the values that broke it (and the server knows which request rows a rule concerns). `row_checks`, optional,
    gives a rule's row-wise twin, `check(record) -> bool` in plain Python, for the server's fast path: without one
    the server runs the rule itself on a frame of the request (correct, a few milliseconds slower); the engine checks
    each twin against its rule on every partition (a check of the validated asset). `max_quarantine_rate`, when
    given, is the share of a partition's rows this feed may lose to quarantine before its check warns (the quality
    policy's `MLSYS_MAX_QUARANTINE_RATE` otherwise): feeds differ in what is normal for them.
    """

    name: str
    schema: Any
    key: Sequence[str]
    partition_by: Any
    format: Literal["csv", "parquet"] = "csv"
    lookup_key: Sequence[str] = ()
    check_columns: Mapping[str, Sequence[str]] = field(default_factory=dict)
    description: str = ""
    row_checks: Mapping[str, Any] = field(default_factory=dict)
    max_quarantine_rate: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", _ref(self.schema))
        object.__setattr__(self, "key", tuple(self.key))
        object.__setattr__(self, "lookup_key", tuple(self.lookup_key))
        object.__setattr__(self, "check_columns", {k: tuple(v) for k, v in dict(self.check_columns).items()})
        object.__setattr__(self, "row_checks", {k: _ref(v) for k, v in dict(self.row_checks).items()})
        if not isinstance(self.partition_by, str) or ":" in self.partition_by:  # a column, or a function's path
            object.__setattr__(self, "partition_by", _ref(self.partition_by))

    @property
    def is_lookup(self) -> bool:
        return bool(self.lookup_key)


@dataclass(frozen=True)
class Prediction:
    """What is predicted, for which rows, and when the truth is known.

    `entity` is the source whose validated rows are predicted. `label` names the label column of the features
    table; `label_from` computes it from the validated rows (a `Ref`), or, when absent, the rows' column of that
    name is the label. `label_delay` is in partitions: the labels of partition P are known once P + delay has
    landed. `outcome_columns` are known only afterwards: never features, never asked of a request.
    `request_columns` are what a request row must carry (default: every entity column but the outcome columns);
    the entity's other columns may be sent too, and are then checked.
    """

    entity: str
    label: str
    task: Literal["binary", "regression"] = "binary"
    label_from: Any = None
    label_delay: int = 1
    outcome_columns: Sequence[str] = ()
    threshold: float = 0.5
    request_columns: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_from", _ref(self.label_from))
        object.__setattr__(self, "outcome_columns", tuple(self.outcome_columns))
        object.__setattr__(self, "request_columns", tuple(self.request_columns))


@dataclass(frozen=True)
class Features:
    """The ONE feature definition: training, batch scoring and serving all call `build`.

    `build(rows, context)` takes validated entity rows and a mapping of lookup-source name to its validated rows,
    and returns one row per entity row, in order: `id_column`, `time_column` (the entity's date) and the
    `categorical` and `numeric` feature columns. `row`, optional, is the same definition for one request row in
    plain Python (`row(record, lookups)`, `lookups[source][key values]` the lookup row), the server's fast path;
    the engine checks it equals `build` on rows of every partition (a check of the features asset).
    """

    build: Any
    categorical: Sequence[str]
    numeric: Sequence[str]
    id_column: str
    time_column: str
    row: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "build", _ref(self.build))
        object.__setattr__(self, "row", _ref(self.row))
        object.__setattr__(self, "categorical", tuple(self.categorical))
        object.__setattr__(self, "numeric", tuple(self.numeric))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.categorical + self.numeric


@dataclass(frozen=True)
class Model:
    """An estimator factory: `factory(categorical=..., numeric=..., task=..., **params)` returns a scikit-learn
    `Pipeline` (preprocessing and model in one object, so serving cannot drift from training).
    `baseline_by` are the feature columns of the fallback model (rates or means per group)."""

    factory: Any = "mlsys_assets.core.model:hist_gradient_boosting"
    params: Mapping[str, Any] = field(default_factory=dict)
    baseline_by: Sequence[str] = ()
    window: int = 60
    holdout: int = 7
    registered_name: str = ""  # the MLflow registered model and experiment; `<system>_model` when empty

    def __post_init__(self) -> None:
        object.__setattr__(self, "factory", _ref(self.factory))
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "baseline_by", tuple(self.baseline_by))


@dataclass(frozen=True)
class Gate:
    """The promotion gate: a candidate must beat the champion on `metric` by `min_improvement` with no slice
    worse by more than `tolerance` (slices under `slice_min_rows` holdout rows are not judged); a first model
    must reach `floor`. The metric's direction (higher or lower is better) follows from its name."""

    metric: str = "roc_auc"
    min_improvement: float = 0.002
    floor: float = 0.6
    slices: Sequence[str] = ()
    tolerance: float = 0.05
    slice_min_rows: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "slices", tuple(self.slices))


@dataclass(frozen=True)
class Monitoring:
    """Drift, live performance and cost.

    `ignore` columns are left out of drift (one value a day, such as calendar columns); `day_level` columns (one
    value per lookup key, such as weather) are judged by their Wasserstein shift alone. Cost: for
    classification, `cost_missed` per missed positive and `cost_false_alarm` per false alarm; for regression,
    `cost_per_unit` per unit of absolute error.
    """

    ignore: Sequence[str] = ()
    day_level: Sequence[str] = ()
    drifted_share: float = 0.15
    day_level_wasserstein: float = 3.0
    day_level_missing_rate: float = 0.9
    rolling_days: int = 7
    min_live: float = 0.6
    max_drop: float = 0.05
    cost_missed: float = 1.0
    cost_false_alarm: float = 1.0
    cost_per_unit: float = 1.0
    performance_window: str = "rolling"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(self, "day_level", tuple(self.day_level))


# The numbers a team tunes without touching code: (section, field) -> meaning. Each is a setting
# MLSYS_<SYSTEM>_<FIELD>, printed by `mlsys settings`.
TUNABLE: dict[tuple[str, str], str] = {
    ("partitions", "start"): "First partition (a date).",
    ("partitions", "end"): "Last partition (a date).",
    ("prediction", "threshold"): "Binary task: probability at or above which a row is predicted positive.",
    ("prediction", "label_delay"): "Partitions until a row's label is known.",
    ("model", "params"): "The model factory's parameters, as a JSON object merged over the declared ones "
                         "(`{\"max_iter\": 100}`).",
    ("model", "window"): "Partitions of features in the training set (the most recent ones).",
    ("model", "holdout"): "Most recent partitions of the window held out for evaluation.",
    ("gate", "min_improvement"): "How much a candidate must beat the champion by on the gate's metric.",
    ("gate", "floor"): "What a first model must reach on the gate's metric.",
    ("gate", "tolerance"): "Largest regression allowed on any slice.",
    ("gate", "slice_min_rows"): "Slices with fewer holdout rows are not judged.",
    ("gate", "slices"): "Feature columns whose slices the gate judges, comma-separated.",
    ("monitoring", "ignore"): "Feature columns left out of drift, comma-separated.",
    ("monitoring", "day_level"): "Feature columns judged by their Wasserstein shift alone, comma-separated.",
    ("monitoring", "drifted_share"): "A partition has drifted when more than this share of monitored columns did.",
    ("monitoring", "day_level_wasserstein"): "Shift, in reference standard deviations, past which a day-level "
                                             "column drifted.",
    ("monitoring", "day_level_missing_rate"): "Change of a day-level column's missing rate past which it drifted.",
    ("monitoring", "rolling_days"): "Partitions in the rolling window of live performance.",
    ("monitoring", "min_live"): "Live value of the gate's metric past which the performance check fails (error).",
    ("monitoring", "max_drop"): "Drop from the holdout value past which the performance check warns.",
    ("monitoring", "cost_missed"): "Binary task: cost of a missed positive (false negative).",
    ("monitoring", "cost_false_alarm"): "Binary task: cost of a false alarm (false positive).",
    ("monitoring", "cost_per_unit"): "Regression: cost per unit of absolute error.",
    ("monitoring", "performance_window"): "What the performance check judges: `rolling` (the rolling window) or "
                                          "`day` (one partition: much noisier).",
}


@dataclass(frozen=True)
class System:
    """A whole ML system. See the module docstring, and `mlsys_assets/systems/flights/declaration.py`."""

    name: str
    sources: Sequence[Source]
    prediction: Prediction
    features: Features
    model: Model = field(default_factory=Model)
    gate: Gate = field(default_factory=Gate)
    monitoring: Monitoring = field(default_factory=Monitoring)
    partitions: Partitions = field(default_factory=Partitions)
    owners: Sequence[str] = ("team:ml-platform",)
    description: str = ""
    default_data: Any = None  # Ref: land_default(landing_dir, partition_keys) -> files written, for demos and tests
    demo: Sequence[str] = ()  # (first, last) date the demo replays; the partitions' range when empty

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "owners", tuple(self.owners))
        object.__setattr__(self, "default_data", _ref(self.default_data))
        object.__setattr__(self, "demo", tuple(self.demo))
        from mlsys_assets.declaration_rules import problems as rules

        problems = list(rules(self))
        if problems:
            raise DeclarationError(f"System {self.name!r}: " + "; ".join(problems))

    # --- lookups -------------------------------------------------------------------------------------------------
    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    @property
    def entity(self) -> Source:
        return self.source(self.prediction.entity)

    @property
    def lookups(self) -> tuple[Source, ...]:
        return tuple(s for s in self.sources if s.is_lookup)

    @property
    def model_name(self) -> str:
        return self.model.registered_name or f"{self.name}_model"

    @property
    def score_column(self) -> str:
        """What batch predictions call the model's output: the positive class's probability, or the value."""
        return "probability" if self.prediction.task == "binary" else "prediction"

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.prediction.task][self.gate.metric]

    # --- settings ------------------------------------------------------------------------------------------------
    def env_var(self, section: str, name: str) -> str:
        return f"MLSYS_{self.name.upper()}_{name.upper()}"

    def settings_rows(self) -> list[tuple[str, str, str]]:
        """(environment variable, default, meaning) of every tunable number of this system."""
        import json

        def shown(value: Any) -> str:
            if isinstance(value, tuple):
                return ",".join(value)
            return json.dumps(value) if isinstance(value, dict) else str(value)

        return [(self.env_var(section, name), shown(getattr(getattr(self, section), name)), meaning)
                for (section, name), meaning in TUNABLE.items()]

    def with_env(self, environ: Mapping[str, str] | None = None) -> System:
        """This declaration with every `MLSYS_<SYSTEM>_<FIELD>` of the environment applied (checked again)."""
        environ = os.environ if environ is None else environ
        sections: dict[str, dict[str, Any]] = {}
        for (section, name) in TUNABLE:
            variable = self.env_var(section, name)
            raw = environ.get(variable)
            if raw is None or raw == "":
                continue
            current = getattr(getattr(self, section), name)
            try:
                if isinstance(current, dict):
                    value = {**current, **_json_object(raw)}
                elif isinstance(current, tuple):
                    value = tuple(part.strip() for part in raw.split(",") if part.strip())
                else:
                    value = type(current)(raw)
            except ValueError as exc:
                expected = "a JSON object" if isinstance(current, dict) else type(current).__name__
                raise DeclarationError(f"{variable}={raw!r}: expected {expected}") from exc
            sections.setdefault(section, {})[name] = value
        if not sections:
            return self
        try:
            return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)
                                                for section, values in sections.items()})
        except DeclarationError as exc:
            applied = ", ".join(f"{self.env_var(section, name)}={value!r}" for section, values in sections.items()
                                for name, value in values.items())
            raise DeclarationError(f"{exc} (with {applied} from the environment)") from exc


def _json_object(raw: str) -> dict[str, Any]:
    import json

    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
