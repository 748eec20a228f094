"""What every warehouse table and column holds, said to a SQL user as DuckDB comments (`COMMENT ON`), read back by
`SELECT comment FROM duckdb_columns()` or any SQL client's catalog.

The words come from three places: the engine's own columns (below), the declaration (a source's pandera field
descriptions, the feature columns, the label and keys), and the metrics. `describe` comments what has no comment
yet, so a table gets its words once, when it first appears.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from mlsys_assets.declaration import System

PARTITION = "The partition the row belongs to: its date (daily, weekly: the Monday) or its hour's start (hourly)."
ENGINE_COLUMNS: dict[str, str] = {
    "partition_date": PARTITION,
    "source_file": "The landing file the row came from.",
    "source_row": "The row's line number in its landing file (the header is line 1).",
    "parse_errors": "Values of the row that did not parse, and why (the row is quarantined for them).",
    "extra_fields": "Columns of the landing file the schema does not declare, kept as JSON.",
    "ingested_at": "When the row was loaded into the warehouse (UTC).",
    "ingested_by_run": "The Dagster run that loaded the row.",
    "failed_checks": "The rules the row broke, separated by '; '.",
    "failed_columns": "The columns each broken rule read, in the same order.",
    "failure_values": "The values that broke each rule, in the same order.",
    "reason": "Why, in words a person reads.",
    "split": "'train' or 'holdout': the most recent partitions of the training window are the holdout.",
    "probability": "The model's probability that the row is positive.",
    "prediction": "The model's predicted value.",
    "predicted_label": "1 when the probability reaches the system's decision threshold, else 0.",
    "model_name": "The MLflow registered model ('baseline' for the fallback).",
    "model_version": "The registered model version that scored the row ('baseline' for the fallback).",
    "mlflow_run_id": "The MLflow run that trained the model.",
    "role": "'champion', or 'challenger' when scored in shadow; 'candidate' in evaluations.",
    "is_fallback": "True when no champion could be loaded and the baseline scored the row.",
    "scored_by_run": "The Dagster run that scored the row.",
    "column_name": "The column judged (a feature, or the model's score).",
    "test": "The drift test ('psi', 'ks_statistic', 'wasserstein', ...) or 'verdict', the column's decision.",
    "value": "The test's value (for 'verdict': the share of tests that drifted); in evaluations, the slice's value.",
    "threshold": "The bar the value is compared with.",
    "drifted": "Whether the value passed its bar (for 'verdict': whether the column drifted).",
    "kind": "'numeric' or 'categorical' (a feature), 'score' or 'holdout_metrics'.",
    "reference_json": "The stored reference: bin edges and shares, quantiles, category shares or metrics, as JSON.",
    "rows": "Rows counted.",
    "days": "Partitions counted.",
    "training_digest": "Content digest of the training set the champion learned from.",
    "built_at": "When the reference was built (UTC).",
    "is_current": "Whether this is the reference daily drift compares against (the current champion's).",
    "source": "'batch' (batch_predictions) or 'served' (the server's prediction log).",
    "span": "'day' (the partition alone) or 'rolling_<n>d' (the rolling window ending with it).",
    "positive_rate": "Share of positive labels.",
    "mean_label": "Mean of the labels.",
    "tp": "True positives at the decision threshold.",
    "fp": "False positives (false alarms) at the decision threshold.",
    "fn": "False negatives (missed positives) at the decision threshold.",
    "tn": "True negatives at the decision threshold.",
    "expected_cost": "What the mistakes cost at the declared prices.",
    "cost_per_prediction": "expected_cost divided by the rows judged.",
    "slice": "The slice column ('overall' for all rows).",
    "candidate_run_id": "The MLflow run of the candidate evaluated.",
    "evaluated_run_id": "The Dagster run that evaluated it.",
    "decided_at": "When the decision was taken (UTC).",
    "action": "'promote', 'reject', 'rollback', 'promote_live' or 'keep_live'.",
    "candidate_version": "The version judged.",
    "previous_champion": "The champion before the decision.",
    "champion_after": "The champion after the decision.",
    "primary_metric": "The metric the decision compared.",
    "candidate_value": "The candidate's value of that metric.",
    "champion_value": "The champion's value of that metric.",
    "dagster_run_id": "The Dagster run that took the decision.",
    "details": "More of the decision, as JSON.",
    "rate": "The baseline's rate (or mean) for the group.",
    "global_rate": "The baseline's overall rate (or mean), for groups it never saw.",
    "request_id": "The request the row came in.",
    "row": "The row's position in its request.",
    "served_at": "When the server answered (UTC).",
    "latency_ms": "How long the answer took, in milliseconds.",
    "request": "The request row as received, as JSON.",
    "features_from": "Where the lookup values came from: the request itself or the published store.",
    "raised_at": "When the alert was raised (UTC).",
    "severity": "'error', 'warning', or 'info' (a promotion or a rollback).",
    "subject": "What the alert is about (a job and partition, a check, a file).",
    "message": "What happened.",
    "where_to_look": "Where to look next (a Dagster UI page or a file).",
    "run_id": "The Dagster run concerned, if any.",
    "alert_id": "The alert's id (sent as X-Mlsys-Alert-Id to the webhook, so a receiver can drop a repeat).",
    "delivered": "Webhook delivery: 'yes', 'no: <why>', or 'off' when no MLSYS_ALERT_WEBHOOK_URL is set.",
    "context_source": "Where each lookup row came from, as JSON: the request, the published store, or missing.",
    "partition": "The partition key of the entity's time, as the server logged it.",
}
METRICS: dict[str, str] = {
    "roc_auc": "ROC AUC of the probabilities.",
    "average_precision": "Average precision of the probabilities.",
    "log_loss": "Log loss of the probabilities.",
    "brier": "Brier score of the probabilities.",
    "precision": "Precision at the decision threshold.",
    "recall": "Recall at the decision threshold.",
    "mae": "Mean absolute error.",
    "rmse": "Root mean squared error.",
    "r2": "Coefficient of determination R².",
}
TABLES: dict[str, str] = {
    "features": "Features of each entity row, one definition for training, batch scoring and serving, and its label.",
    "training_set": "The training window's labelled feature rows, split by time into train and holdout.",
    "baseline_rates": "The fallback model: the label's rate (or mean) per group, fitted on the train split.",
    "model_evaluations": "Candidate and champion on the same holdout: overall and per slice.",
    "promotion_history": "Every decision about the champion: promotions, rejections, rollbacks, live reviews.",
    "batch_predictions": "Every entity row of each partition, scored by the champion (and a challenger in shadow).",
    "drift_references": "What drift compares against, stored once per champion.",
    "feature_drift": "Each partition's features against the champion's reference: one row per column and test.",
    "prediction_drift": "Each partition's scores against the champion's holdout scores.",
    "live_performance": "Each model's metrics and cost on a partition once its labels landed, and over a window.",
    "served_predictions": "Every answer of the online server, from its prediction log.",
    "alerts": "Every alert raised: failed runs, failed checks, unreadable landing files, promotions, rollbacks.",
}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _source_columns(system: System) -> dict[str, dict[str, str]]:
    """For each source, its declared columns' words: the pandera field's description, else its name and kind."""
    from mlsys_assets.core.sources import columns_of, schema_for

    out: dict[str, dict[str, str]] = {}
    for source in system.sources:
        schema, kinds = schema_for(source), columns_of(source).kinds
        out[source.name] = {name: (column.description or f"`{name}` of the {source.name} feed, as delivered "
                                   f"({kinds[name]})") for name, column in schema.columns.items()}
    return out


def _feature_columns(system: System) -> dict[str, str]:
    spec, prediction = system.features, system.prediction
    words = {name: f"Feature (categorical) from {spec.build.path}." for name in spec.categorical}
    words |= {name: f"Feature (numeric) from {spec.build.path}." for name in spec.numeric}
    words[spec.id_column] = f"The key of the {prediction.entity} row."
    words[spec.time_column] = f"The time of the {prediction.entity} row."
    words[prediction.label] = (f"The label ({prediction.task}), known {prediction.label_delay} partition(s) later; "
                               "missing until then.")
    return words


def table_words(system: System) -> dict[str, str]:
    """Every table the engine writes for a system, with what it holds."""
    words = dict(TABLES)
    for source in system.sources:
        words[f"raw_{source.name}"] = f"The {source.name} landing files as delivered, typed, one row per line."
        words[f"validated_{source.name}"] = f"{source.name} rows that pass every rule of the schema."
        words[f"quarantined_{source.name}"] = f"{source.name} rows that broke a rule, whole, with the reason."
    return words


def describe(con: duckdb.DuckDBPyConnection, system: System | None, schema: str | None = None) -> int:
    """Comment every table and column of the schema (the system's, or `main` without a system) that has no comment
    yet; returns how many comments were written. A column nobody describes stays without one (a test finds it)."""
    schema = schema or (system.name if system else "main")
    missing = con.execute(
        "SELECT table_name, NULL AS column_name FROM duckdb_tables() WHERE schema_name = ? AND database_name = "
        "current_database() AND (comment IS NULL OR comment = '') UNION ALL SELECT table_name, column_name FROM "
        "duckdb_columns() WHERE schema_name = ? AND database_name = current_database() AND (comment IS NULL OR "
        "comment = '')", [schema, schema]).fetchall()
    if not missing:
        return 0
    tables = table_words(system) if system else dict(TABLES)
    columns = {**ENGINE_COLUMNS, **METRICS, **(_feature_columns(system) if system else {})}
    by_source = _source_columns(system) if system else {}
    written = 0
    for table, column in missing:
        if column is None:
            text = tables.get(table)
            statement = f'COMMENT ON TABLE "{schema}"."{table}" IS '
        else:
            source = table.split("_", 1)[1] if table.startswith(("raw_", "validated_", "quarantined_")) else None
            text = by_source.get(source, {}).get(column) or columns.get(column) or (
                f"A value of the group column `{column}`." if table == "baseline_rates" else None)
            statement = f'COMMENT ON COLUMN "{schema}"."{table}"."{column}" IS '
        if text:
            con.execute(statement + _quote(text))
            written += 1
    return written
