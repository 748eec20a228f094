"""The models a system's server answers with: @champion, @challenger (shadow scoring) and the published baseline,
each swapped in whole by one reference assignment once fully loaded (and compiled for the row path), so a
promotion or a rollback is picked up without a restart and never mixes one request's rows."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlsys_assets.core.online import baseline_path, file_signature

if TYPE_CHECKING:
    from mlsys_assets.declaration import System

CHAMPION, CHALLENGER, BASELINE = "champion", "challenger", "baseline"
log = logging.getLogger("mlsys.serve")


class ModelSource(Protocol):
    """Where models come from: `RegistryModels` in production, anything alike in a test."""

    model_name: str

    def alias_version(self, alias: str) -> str | None: ...

    def load(self, version: str) -> object: ...


@dataclass(frozen=True)
class RegistryModels:
    """The MLflow registry, read only: a missing SQLite store is "no champion", never created by the server."""

    registry: Any  # core.registry.Registry (typed loosely: importing it imports MLflow)

    @property
    def model_name(self) -> str:
        return self.registry.model_name

    def alias_version(self, alias: str) -> str | None:
        uri = self.registry.tracking_uri
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
            return None
        return self.registry.alias_version(alias)

    def load(self, version: str) -> object:
        import mlflow

        mlflow.set_tracking_uri(self.registry.tracking_uri)  # Registry.load resolves models:/ through these
        mlflow.set_registry_uri(self.registry.tracking_uri)
        return self.registry.load(version)


class RowBaseline:
    """The baseline as the row path calls a compiled model (`RateBaseline.value_of` for each row)."""

    def __init__(self, baseline: Any) -> None:
        self.probability = baseline.value_of

    def probabilities(self, rows: list[dict[str, Any]]) -> list[float]:
        return [self.probability(row) for row in rows]


@dataclass(frozen=True)
class LoadedModel:
    role: str  # champion, challenger or baseline
    version: str  # the registry version, or "baseline"
    model: object
    loaded_at: str
    source: str = ""
    compiled: Any = None  # the row path's form (`core.rowmodel.RowModel`, `RowBaseline`), when there is one
    not_compiled: str | None = None  # why there is none

    @property
    def is_fallback(self) -> bool:
        return self.role == BASELINE

    def describe(self) -> dict:
        return {"role": self.role, "model_version": self.version, "loaded_at": self.loaded_at,
                "fallback": self.is_fallback, "row_path": self.compiled is not None,
                **({"row_path_reason": self.not_compiled} if self.not_compiled else {}),
                **({"source": self.source} if self.source else {})}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def compiled_form(system: System, model: object) -> tuple[Any, str | None]:
    """The model for the row path, or None and why not (the table path scores it then: correct, slower)."""
    from mlsys_assets.core.model import RateBaseline
    from mlsys_assets.core.rowmodel import compile_pipeline

    if isinstance(model, RateBaseline):
        return (RowBaseline(model), None) if hasattr(model, "rates_") else (None, "the baseline is not fitted")
    compiled = compile_pipeline(model)
    if compiled is None:
        return None, f"{type(model).__name__} does not compile (a HistGradientBoosting pipeline does)"
    return compiled, None


class ModelWatcher:
    """Keeps `champion`, `challenger` and `baseline` of one system current. Readers take one reference per batch."""

    def __init__(self, system: System, source: ModelSource, online: Path, shadow: bool) -> None:
        self.system, self.source, self.online, self.shadow = system, source, online, shadow
        self.champion: LoadedModel | None = None
        self.challenger: LoadedModel | None = None
        self.baseline = self._load_baseline(None)
        self.champion_alias: str | None = None
        self.problems: dict[str, str | None] = {CHAMPION: "not loaded yet", CHALLENGER: None}
        self.registry_error: str | None = None
        self._baseline_signature: tuple | None = None
        self._lock = threading.Lock()  # one refresh at a time

    @property
    def problem(self) -> str | None:
        """Why the champion is not what answers (None when it is)."""
        return self.problems[CHAMPION]

    def serving(self) -> LoadedModel:
        return self.champion or self.baseline

    def refresh(self) -> None:
        with self._lock:
            self.registry_error = None
            self._refresh_baseline()
            self._refresh(CHAMPION)
            if self.shadow:
                self._refresh(CHALLENGER)

    def _refresh_baseline(self) -> None:
        import pandas as pd

        path = baseline_path(self.online, self.system.name)
        signature = file_signature(path)
        if signature != self._baseline_signature:
            try:
                self.baseline = self._load_baseline(pd.read_parquet(path) if signature else None)
                self._baseline_signature = signature
            except Exception as exc:  # a bad file keeps the previous baseline
                log.warning("%s: published baseline rates could not be read: %s", self.system.name, exc)

    def _load_baseline(self, rates: Any) -> LoadedModel:
        import pandas as pd

        from mlsys_assets.core.model import RateBaseline

        by = self.system.model.baseline_by
        if rates is None or rates.empty:
            empty = pd.DataFrame({c: [] for c in (*by, "rate", "global_rate")})
            model, source = RateBaseline.from_frame(empty, by), "constant global rate"
        else:
            model, source = RateBaseline.from_frame(rates, by), f"published rates ({len(rates)} groups)"
        compiled, why = compiled_form(self.system, model)
        return LoadedModel(BASELINE, BASELINE, model, _now(), source, compiled, why)

    def _refresh(self, role: str) -> None:
        current = self.champion if role == CHAMPION else self.challenger
        try:
            version = self.source.alias_version(role)
        except Exception as exc:  # registry unreachable: keep what is loaded
            self.registry_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: could not read @%s: %s", self.system.name, role, self.registry_error)
            return
        if role == CHAMPION:
            self.champion_alias = version
        if version is None:
            self._set(role, None)
            self._problem(role, f"registered model {self.source.model_name!r} has no @{role}"
                          if role == CHAMPION else None)
            return
        if current is not None and current.version == version:
            self._problem(role, None)
            return
        try:
            model = self.source.load(version)
        except Exception as exc:  # keep answering with what is loaded (or the baseline), and say so
            self._problem(role, f"@{role} is version {version} but it could not be loaded: "
                                f"{type(exc).__name__}: {exc}")
            return
        compiled, why = compiled_form(self.system, model)
        self._set(role, LoadedModel(role, version, model, _now(), compiled=compiled, not_compiled=why))
        self._problem(role, None)
        log.info("%s: @%s is now version %s%s", self.system.name, role, version, f"; {why}" if why else "")

    def _problem(self, role: str, problem: str | None) -> None:
        if problem and problem != self.problems[role]:
            log.warning("%s: %s", self.system.name, problem)  # once per new problem, not at every poll
        self.problems[role] = problem

    def _set(self, role: str, loaded: LoadedModel | None) -> None:
        if role == CHAMPION:
            self.champion = loaded
        else:
            self.challenger = loaded

    def scoring_failed(self, exc: Exception) -> None:
        version = self.champion.version if self.champion else "?"
        self._problem(CHAMPION, f"@champion version {version} failed to score: {type(exc).__name__}: {exc}")
