"""The model card of a registered version, in Markdown: what the model is for, what it was trained on, how the gate
judged it and on what it was not judged. Stored as the version's description in the MLflow registry (the MLflow UI
shows it on the version's page) and as `model_card.md` beside the candidate's run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlsys_assets.declaration import System


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(system: System, version: str, summary: str, measured: Mapping[str, Mapping[str, float]],
               slices: pd.DataFrame, training: Mapping[str, str], links: Mapping[str, str]) -> str:
    """The card. `measured`: role (candidate, champion) -> holdout metrics; `slices`: the candidate's metrics per
    slice value (with `rows`); `training`: what the candidate's run recorded (window, rows, digests, parameters);
    `links`: name -> URL or id (the Dagster run, the MLflow run)."""
    prediction, gate, monitoring = system.prediction, system.gate, system.monitoring
    metric = gate.metric
    lines = [f"# {system.model_name} version {version}", "",
             f"**Decision:** {summary} (approved by the promotion gate, automatically).", "",
             "## Intended use", "",
             f"{system.description} It predicts `{prediction.label}` ({prediction.task}) for each validated "
             f"`{prediction.entity}` row of system `{system.name}`, known {prediction.label_delay} partition(s) later.",
             "",
             "## Training", ""]
    lines += [f"- {name}: {value}" for name, value in training.items()]
    names = sorted({name for values in measured.values() for name in values} - {"rows"})
    lines += ["", f"## Holdout metrics (the gate's: `{metric}`)", "",
              "| metric | " + " | ".join(measured) + " |", "| --- |" + " --- |" * len(measured)]
    lines += [f"| {name} | " + " | ".join(_number(values.get(name)) for values in measured.values()) + " |"
              for name in names]
    judged = slices[slices["rows"] >= gate.slice_min_rows] if len(slices) else slices
    skipped = slices[slices["rows"] < gate.slice_min_rows] if len(slices) else slices
    lines += ["", f"## Slices judged (at least {gate.slice_min_rows} holdout rows, tolerance {gate.tolerance})", ""]
    if len(judged):
        lines += [f"| slice | value | rows | {metric} |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['slice']} | {r['value']} | {int(r['rows'])} | {_number(r.get(metric))} |"
                  for r in judged.to_dict("records")]
    else:
        lines.append("none")
    lines += ["", "## Not judged", "",
              ("Slices under the minimum rows: " + ", ".join(f"{r['slice']}={r['value']} ({int(r['rows'])} rows)"
                                                            for r in skipped.to_dict("records")))
              if len(skipped) else "Every slice had enough rows."]
    if prediction.task == "binary":
        decisions = (f"Predicted positive at probability >= {prediction.threshold}; a missed positive costs "
                     f"{monitoring.cost_missed}, a false alarm {monitoring.cost_false_alarm}.")
    else:
        decisions = f"Each unit of absolute error costs {monitoring.cost_per_unit}."
    lines += ["", "## Decisions and costs", "", decisions, "", "## Links", ""]
    lines += [f"- {name}: {value}" for name, value in links.items()]
    return "\n".join(lines) + "\n"
