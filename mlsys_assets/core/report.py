"""The monitoring report as plain functions: what it shows, read from the warehouse once (`load_report_data`), its
figures (matplotlib, embedded as PNG) and the self-contained HTML page. The monitoring numbers themselves are in
`core.monitoring`."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from mlsys_assets.core.monitoring import (
    BATCH_PREDICTIONS,
    FEATURE_DRIFT,
    LIVE_PERFORMANCE,
    PREDICTION_DRIFT,
    DriftPolicy,
    day_string,
    drift_summary,
    holdout_auc,
    load_reference,
    stored_versions,
)
from mlsys_assets.core.warehouse import PARTITION_COLUMN, read_frame, table_exists
from mlsys_assets.declaration import System


@dataclass
class ReportData:
    """Everything the report shows, read from the warehouse once."""

    feature_drift: pd.DataFrame
    prediction_drift: pd.DataFrame
    live_performance: pd.DataFrame
    quarantine: pd.DataFrame  # partition_date, source, raw_rows, quarantined_rows, quarantine_rate
    versions: pd.DataFrame  # partition_date, role, model_version, rows
    holdout_auc: dict[str, float] = field(default_factory=dict)
    drift_policy: DriftPolicy = field(default_factory=DriftPolicy)
    min_live_roc_auc: float = 0.6

    @property
    def drift_days(self) -> pd.DataFrame:
        return drift_summary(self.feature_drift, self.drift_policy.thresholds)

    @property
    def champion_version(self) -> str | None:
        """The version that scored the latest day as champion."""
        champion = self.versions[self.versions["role"] == "champion"]
        return None if champion.empty else str(champion.sort_values(PARTITION_COLUMN)["model_version"].iloc[-1])

    def champion_day_auc(self) -> pd.DataFrame:
        perf = self.live_performance
        return perf[(perf["span"] == "day") & (perf["role"] == "champion") & (perf["source"] == "batch")]


def _table(con: duckdb.DuckDBPyConnection, table: str, sql: str | None = None) -> pd.DataFrame:
    if not table_exists(con, table):
        return pd.DataFrame()
    frame = read_frame(con, sql or f"SELECT * FROM {table} ORDER BY {PARTITION_COLUMN}")
    if PARTITION_COLUMN in frame.columns:
        frame[PARTITION_COLUMN] = frame[PARTITION_COLUMN].map(day_string)
    return frame


def _quarantine(con: duckdb.DuckDBPyConnection, sources: Sequence[str]) -> pd.DataFrame:
    parts = []
    for source in sources:
        raw, quarantined = f"raw_{source}", f"quarantined_{source}"
        if not (table_exists(con, raw) and table_exists(con, quarantined)):
            continue
        parts.append(_table(con, raw, f"""
            SELECT r.{PARTITION_COLUMN}, '{source}' AS source, r.raw_rows, coalesce(q.quarantined_rows, 0) AS
                   quarantined_rows
            FROM (SELECT {PARTITION_COLUMN}, count(*) AS raw_rows FROM {raw} GROUP BY ALL) r
            LEFT JOIN (SELECT {PARTITION_COLUMN}, count(*) AS quarantined_rows FROM {quarantined} GROUP BY ALL) q
            USING ({PARTITION_COLUMN}) ORDER BY 1"""))
    if not parts:
        return pd.DataFrame(columns=[PARTITION_COLUMN, "source", "raw_rows", "quarantined_rows", "quarantine_rate"])
    frame = pd.concat(parts, ignore_index=True)
    return frame.assign(quarantine_rate=frame["quarantined_rows"] / frame["raw_rows"].clip(lower=1))


def load_report_data(system: System, con: duckdb.DuckDBPyConnection) -> ReportData:
    """The monitoring tables, quarantine counts and model versions by day; missing tables read as empty."""
    versions = _table(con, BATCH_PREDICTIONS, f"SELECT {PARTITION_COLUMN}, role, CAST(model_version AS VARCHAR) "
                                              f"AS model_version, count(*) AS rows FROM {BATCH_PREDICTIONS} "
                                              "GROUP BY ALL ORDER BY ALL")
    if versions.empty:
        versions = pd.DataFrame(columns=[PARTITION_COLUMN, "role", "model_version", "rows"])
    aucs = {}
    for version in stored_versions(con):
        value = holdout_auc(load_reference(con, version))
        if value is not None:
            aucs[version] = value
    return ReportData(feature_drift=_table(con, FEATURE_DRIFT), prediction_drift=_table(con, PREDICTION_DRIFT),
                      live_performance=_table(con, LIVE_PERFORMANCE),
                      quarantine=_quarantine(con, [s.name for s in system.sources]),
                      versions=versions, holdout_auc=aucs, drift_policy=DriftPolicy.of(system),
                      min_live_roc_auc=system.monitoring.min_live)


def key_figures(data: ReportData) -> dict[str, Any]:
    """The numbers a reader wants first: what was monitored, which days drifted, how the champion does live."""
    days = data.drift_days
    auc = data.champion_day_auc().dropna(subset=["roc_auc"]) if len(data.live_performance) else pd.DataFrame()
    latest = auc.sort_values(PARTITION_COLUMN).iloc[-1] if len(auc) else None
    champion = data.champion_version
    return {
        "days monitored": len(days),
        "first day": days[PARTITION_COLUMN].iloc[0] if len(days) else "none",
        "last day": days[PARTITION_COLUMN].iloc[-1] if len(days) else "none",
        "drifted days": ", ".join(days.loc[days["drifted"], PARTITION_COLUMN]) or "none",
        "latest live ROC AUC": (f"{latest['roc_auc']:.4f} ({latest[PARTITION_COLUMN]}, version "
                                f"{latest['model_version']})" if latest is not None else "no labels yet"),
        "champion version": champion or "none",
        "champion holdout ROC AUC": (f"{data.holdout_auc[champion]:.4f}" if champion in data.holdout_auc
                                     else "unknown"),
    }


def _figure(width: float = 10.0, height: float = 3.6):
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend or figure state

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _no_data(ax, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "no data yet", ha="center", va="center", fontsize=14, color="grey", transform=ax.transAxes)
    ax.set_axis_off()


def _version(version: object) -> str:
    """`v3` for a registered version, the name itself for the baseline."""
    return f"v{version}" if str(version).isdigit() else str(version)


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values)


def _date_axis(ax, days: pd.Series, xlabel: str = "day") -> None:
    """Whole days on the x axis (never hours, even for one or two days), padded by half a day."""
    import matplotlib.dates as mdates

    first, last = days.min(), days.max()
    locator = mdates.DayLocator() if (last - first).days <= 14 else mdates.AutoDateLocator(minticks=3, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlim(first - pd.Timedelta(hours=12), last + pd.Timedelta(hours=12))
    ax.set_xlabel(xlabel)
    ax.grid(True, alpha=0.3)


def plot_drifted_share(data: ReportData) -> bytes:
    title = "Share of monitored feature columns drifted, per day"
    fig, ax = _figure()
    days = data.drift_days
    if days.empty:
        _no_data(ax, title)
        return _png(fig)
    x = _dates(days[PARTITION_COLUMN])
    ax.plot(x, days["drifted_share"], marker="o", color="tab:blue", label="drifted share")
    ax.axhline(data.drift_policy.thresholds.drifted_share, color="tab:red", linestyle="--",
               label=f"threshold {data.drift_policy.thresholds.drifted_share:g}")
    flagged = days["drifted"].to_numpy(dtype=bool)
    ax.scatter(x[flagged], days.loc[flagged, "drifted_share"], color="tab:red", s=80, zorder=3, label="drifted day")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of columns drifted")
    ax.set_title(title)
    ax.legend(loc="upper left")
    _date_axis(ax, x)
    return _png(fig)


def plot_drift_heatmap(data: ReportData, clip: float = 1.0) -> bytes:
    title = "PSI per feature column and day (verdict drifted: x)"
    table = data.feature_drift
    if table.empty:
        fig, ax = _figure()
        _no_data(ax, title)
        return _png(fig)
    psi = table[table["test"] == "psi"].pivot_table(index="column_name", columns=PARTITION_COLUMN, values="value")
    verdict = table[table["test"] == "verdict"].pivot_table(index="column_name", columns=PARTITION_COLUMN,
                                                             values="drifted", aggfunc="max")
    order = list(dict.fromkeys(table["column_name"]))
    psi = psi.reindex([c for c in order if c in psi.index])
    fig, ax = _figure(10.0, 1.6 + 0.28 * len(psi))
    image = ax.imshow(psi.clip(upper=clip).to_numpy(dtype=float), aspect="auto", cmap="Reds", vmin=0, vmax=clip,
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label=f"PSI (clipped at {clip:g})")
    ax.set_yticks(range(len(psi)), psi.index)
    step = max(1, len(psi.columns) // 12)
    ax.set_xticks(range(0, len(psi.columns), step), list(psi.columns)[::step], rotation=45, ha="right")
    if len(psi.columns) <= 62:
        for i, column in enumerate(psi.index):
            for j, day in enumerate(psi.columns):
                if column in verdict.index and day in verdict.columns and verdict.loc[column, day] == 1:
                    ax.text(j, i, "x", ha="center", va="center", color="black", fontsize=9)
    ax.set_xlabel("day")
    ax.set_title(title)
    return _png(fig)


def plot_live_auc(data: ReportData) -> bytes:
    title = "Live ROC AUC per day (labels arrive late) against the champion's holdout"
    fig, ax = _figure(10.0, 4.4)
    perf = data.live_performance
    if perf.empty:
        _no_data(ax, title)
        return _png(fig)
    for (source, role, version, window), part in perf.groupby(["source", "role", "model_version", "span"]):
        style = "-" if window == "day" else ":"
        ax.plot(_dates(part[PARTITION_COLUMN]), part["roc_auc"], style, marker="o" if window == "day" else None,
                label=f"{role} {_version(version)} ({source}, {window})")
    champion = data.champion_version
    if champion in data.holdout_auc:
        ax.axhline(data.holdout_auc[champion], color="tab:green", linestyle="--",
                   label=f"champion {_version(champion)} holdout {data.holdout_auc[champion]:.3f}")
    ax.axhline(data.min_live_roc_auc, color="tab:red", linestyle="--", label=f"floor {data.min_live_roc_auc:g}")
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("ROC AUC")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, ncol=3, frameon=False)
    _date_axis(ax, _dates(perf[PARTITION_COLUMN]))
    return _png(fig)


def cost_by_version(perf: pd.DataFrame) -> pd.DataFrame:
    """Expected cost summed over the days each (source, role, version) was scored, and per prediction."""
    columns = ["source", "role", "model_version", "days", "rows", "fn", "fp", "expected_cost", "cost_per_prediction"]
    if perf.empty:
        return pd.DataFrame(columns=columns)
    daily = perf[perf["span"] == "day"]
    out = daily.groupby(["source", "role", "model_version"], as_index=False).agg(
        days=(PARTITION_COLUMN, "nunique"), rows=("rows", "sum"), fn=("fn", "sum"), fp=("fp", "sum"),
        expected_cost=("expected_cost", "sum"))
    return out.assign(cost_per_prediction=out["expected_cost"] / out["rows"].clip(lower=1))[columns]


def plot_cost(data: ReportData) -> bytes:
    title = "Expected cost of mistakes per prediction, by model version (missed positives and false alarms)"
    fig, ax = _figure()
    cost = cost_by_version(data.live_performance)
    if cost.empty:
        _no_data(ax, title)
        return _png(fig)
    labels = [f"{r.role} {_version(r.model_version)}\n({r.source})" for r in cost.itertuples()]
    bars = ax.bar(labels, cost["cost_per_prediction"], color="tab:orange", width=0.5)
    ax.set_xlim(-0.75, max(len(labels), 3) - 0.25)
    for bar, row in zip(bars, cost.itertuples(), strict=True):
        ax.annotate(f"total {row.expected_cost:,.0f} over {row.days} day(s)", (bar.get_x() + bar.get_width() / 2,
                    bar.get_height()), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("expected cost per prediction")
    ax.set_title(title)
    ax.margins(y=0.2)
    return _png(fig)


def plot_quarantine(data: ReportData) -> bytes:
    title = "Share of each day's raw rows quarantined by validation"
    fig, ax = _figure()
    frame = data.quarantine
    if frame.empty:
        _no_data(ax, title)
        return _png(fig)
    for source, part in frame.groupby("source"):
        ax.plot(_dates(part[PARTITION_COLUMN]), part["quarantine_rate"] * 100, marker="o", label=source)
    ax.set_ylabel("quarantined rows (%)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    _date_axis(ax, _dates(frame[PARTITION_COLUMN]))
    return _png(fig)


def plot_versions(data: ReportData) -> bytes:
    title = "Model version that scored each day's batch predictions, by role"
    fig, ax = _figure(10.0, 3.0)
    frame = data.versions
    if frame.empty:
        _no_data(ax, title)
        return _png(fig)
    names = sorted(map(str, frame["model_version"].unique()), key=lambda v: (v.isdigit(), int(v) if v.isdigit()
                                                                             else 0, v))
    position = {name: i for i, name in enumerate(names)}
    for (role, part), marker in zip(frame.groupby("role"), "os^Dv", strict=False):
        ax.scatter(_dates(part[PARTITION_COLUMN]), part["model_version"].astype(str).map(position), marker=marker,
                   s=40, label=role)
    ax.set_yticks(range(len(names)), [str(n) for n in names])
    ax.set_ylim(-0.5, len(names) - 0.5)
    ax.set_ylabel("model version")
    ax.set_title(title)
    ax.legend(loc="upper left")
    _date_axis(ax, _dates(frame[PARTITION_COLUMN]))
    return _png(fig)


FIGURES = (
    ("drifted_share", "Feature drift over time", plot_drifted_share,
     "Share of the monitored feature columns whose verdict is 'drifted', per day; the day drifted above the line. "
     "Columns the declaration ignores (one value a day, such as the calendar) are not monitored."),
    ("drift_heatmap", "Feature drift per column", plot_drift_heatmap,
     "PSI of each column and day against the champion's training data. Day-level columns hold one reading per "
     "lookup key, so their PSI is high on ordinary days: they are judged by their Wasserstein shift instead."),
    ("live_auc", "Live performance", plot_live_auc,
     "ROC AUC on each day's predictions once their labels landed (solid), over the rolling window (dotted), against "
     "the champion's ROC AUC on its holdout and the floor of the performance check."),
    ("expected_cost", "Business cost", plot_cost,
     "Missed positives and false alarms priced by the declared costs, per prediction, for each model version "
     "and role over the days it scored."),
    ("quarantine_rate", "Data quality", plot_quarantine,
     "Share of each day's raw rows that validation quarantined, per source."),
    ("model_versions", "Models in production", plot_versions,
     "The model version that produced each day's batch predictions, per role."),
)


def report_figures(data: ReportData) -> dict[str, tuple[str, str, bytes]]:
    """Every figure of the report as (heading, caption, PNG bytes), by id."""
    return {key: (heading, caption, plot(data)) for key, heading, plot, caption in FIGURES}


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; } th { background: #f3f3f3; }
figure { margin: 1rem 0 2rem; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; margin-top: 0.3rem; }
"""


def _html_table(frame: pd.DataFrame, max_rows: int = 30) -> str:
    if frame.empty:
        return "<p><em>no rows</em></p>"
    return frame.head(max_rows).to_html(index=False, border=0, float_format=lambda v: f"{v:.4f}", na_rep="")


def render_report(data: ReportData, generated_at: str) -> str:
    """One self-contained HTML page: styles inline, figures as base64 PNG, nothing fetched from anywhere."""
    figures = report_figures(data)
    facts = pd.DataFrame(list(key_figures(data).items()), columns=["figure", "value"])
    days = data.drift_days
    latest_perf = data.live_performance
    if len(latest_perf):
        latest_perf = latest_perf[latest_perf[PARTITION_COLUMN] == latest_perf[PARTITION_COLUMN].max()][[
            PARTITION_COLUMN, "source", "role", "model_version", "span", "rows", "roc_auc", "average_precision",
            "log_loss", "brier", "tp", "fp", "fn", "tn", "expected_cost"]]
    body = [f"<h1>Monitoring report</h1><p class='meta'>Generated {html.escape(generated_at)}</p>",
            "<h2>Key figures</h2>", _html_table(facts)]
    for key, (heading, caption, png) in figures.items():
        body.append(f"<h2>{html.escape(heading)}</h2><figure id='{key}'><img alt='{html.escape(heading)}' "
                    f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    body += ["<h2>Drift verdict per day</h2>", _html_table(days.iloc[::-1], max_rows=60),
             "<h2>Live performance, latest labelled day</h2>", _html_table(latest_perf)]
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>mlsys monitoring report</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
