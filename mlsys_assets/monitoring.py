"""Monitoring assets: drift against a reference stored once per champion, live performance once the labels land,
and the HTML report. The checks here are what the retraining sensor watches; the logic is in core.monitoring."""

from datetime import UTC, datetime
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetRecordsFilter,
    Config,
    DagsterInstance,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from mlsys_assets.automation import condition_for
from mlsys_assets.core.warehouse import (
    PARTITION_COLUMN,
    PartitionWrite,
    in_partitions,
    read_days,
    read_frame,
    replace_partitions,
    table_exists,
)
from mlsys_assets.metadata import accounted, markdown_table
from mlsys_assets.naming import Names
from mlsys_assets.resources import MlflowStore, Warehouse
from mlsys_assets.settings import home_path

# core.monitoring (and scipy, through core.drift) is imported inside the assets: ~0.5 s off every code location load.
FEATURE_DRIFT_CHECK = "features_within_drift_threshold"
PERFORMANCE_CHECK = "performance_above_floor"
REPORT_NAME = "monitoring_report"


class DriftReferenceConfig(Config):
    rebuild: bool = Field(default=False, description="Recompute the champion's reference even if it is stored.")


def monitoring_assets(names: Names) -> list:
    """drift_reference, feature_drift, prediction_drift, live_performance and monitoring_report of one system."""
    system = names.system
    monitoring = system.monitoring
    partitions = names.partitions
    key, label, metric = system.features.id_column, system.prediction.label, system.gate.metric
    shown = ["roc_auc", "log_loss", "tp", "fp", "fn", "tn"] if system.prediction.task == "binary" \
        else ["mae", "rmse", "r2"]
    features_key = names.key("features")
    # live_performance of partition P reads the features of P (its labels) through P + label_delay (whose arrival
    # means they are in), so automation reruns P when P + delay lands
    label_arrival = AssetDep(features_key, partition_mapping=TimeWindowPartitionMapping(
        start_offset=0, end_offset=system.prediction.label_delay, allow_nonexistent_upstream_partitions=True))

    def daily_check(name: str, description: str) -> AssetCheckSpec:
        asset_name = {FEATURE_DRIFT_CHECK: "feature_drift", PERFORMANCE_CHECK: "live_performance"}[name]
        return AssetCheckSpec(name, asset=names.key(asset_name), partitions_def=partitions, description=description)

    @asset(
        key=names.key("drift_reference"),
        automation_condition=condition_for(names, "drift_reference"),
        deps=[names.key("champion_model"), names.key("training_set")],
        group_name=names.group("monitoring"),
        kinds={"duckdb", "mlflow", "scipy"},
        owners=names.owners,
        pool="warehouse",
        metadata={"table": names.table("drift_references")},
    )
    @accounted
    def drift_reference(context: AssetExecutionContext, config: DriftReferenceConfig, warehouse: Warehouse,
                        mlflow_store: MlflowStore) -> MaterializeResult:
        """What daily drift compares against, computed once per champion and stored in `drift_references`: feature
        statistics of its training split, the distribution of its holdout scores and its holdout metrics. Without a
        champion, the training set's features alone, as version 'none'."""
        from mlsys_assets.core.monitoring import (
            NO_CHAMPION,
            build_stored_reference,
            load_reference,
            mark_current,
            save_reference,
        )
        from mlsys_assets.core.registry import CHAMPION
        from mlsys_assets.core.training import dataset_digest

        registry = mlflow_store.registry(system)
        registry.activate()
        version = registry.alias_version(CHAMPION) or NO_CHAMPION
        with warehouse.get_connection(names.system) as con:
            stored = None if config.rebuild or version == NO_CHAMPION else load_reference(con, version)
            if stored is not None:
                mark_current(con, version)
            elif not table_exists(con, "training_set"):
                raise ValueError("drift_reference needs training_set: run the retraining job first")
            else:
                frame = read_frame(con, f'SELECT * FROM training_set ORDER BY "{system.features.time_column}", '
                                        f'"{key}"')
        reused = stored is not None
        matches: bool | str = "n/a"
        if not reused:
            model = registry.load(version) if version != NO_CHAMPION else None
            stored = build_stored_reference(system, frame, version, model)
            if version != NO_CHAMPION:
                tags = registry.client.get_run(registry.version_ref(version).run_id).data.tags
                matches = tags.get("mlsys.training_digest") == dataset_digest(frame, key)
                if not matches:
                    context.log.warning(f"training_set is not the data champion version {version} was trained on "
                                        "(retrained since?): its reference describes the current training set")
            with warehouse.get_connection(names.system) as con:
                rows = save_reference(con, stored, datetime.now(UTC).replace(tzinfo=None))
        else:
            rows = len(stored.features) + (stored.score is not None) + (stored.holdout_metrics is not None)
        metrics = {f"holdout_{k}": float(v) for k, v in (stored.holdout_metrics or {}).items() if k != "rows"}
        return MaterializeResult(metadata={
            "dagster/row_count": rows,
            "model_version": version,
            "reference": "reused (stored for this champion)" if reused else "built from training_set",
            "training_set_matches_champion": matches,
            "train_rows": stored.train_rows, "holdout_rows": stored.holdout_rows,
            "feature_columns": len(stored.features),
            "score_reference": "yes" if stored.score is not None else "no (no champion)",
            "training_digest": stored.training_digest,
            **metrics,
        })


    def _label_day(day: str, delay_days: int) -> str:
        from mlsys_assets.core.monitoring import label_day

        return label_day(day, delay_days, system.partitions.grain)


    @asset(
        key=names.key("feature_drift"),
        automation_condition=condition_for(names, "feature_drift"),
        partitions_def=partitions,
        deps=[features_key, names.key("drift_reference")],
        group_name=names.group("monitoring"),
        kinds={"duckdb", "scipy"},
        owners=names.owners,
        pool="warehouse",
        metadata={"partition_expr": PARTITION_COLUMN, "table": names.table("feature_drift")},
        check_specs=[daily_check(FEATURE_DRIFT_CHECK, "The share of drifted feature columns stays under the policy's "
                                                       "limit (error severity: the retraining sensor acts on it).")],
    )
    @accounted
    def feature_drift(context: AssetExecutionContext, warehouse: Warehouse):
        """The day's features against the current champion's stored reference: one row per column and test (PSI, KS,
        Wasserstein, chi-square, Jensen-Shannon, unseen and missing shares) plus the column's verdict."""
        from mlsys_assets.core.drift import day_verdict
        from mlsys_assets.core.monitoring import DriftPolicy, feature_drift_table, load_reference, verdict_frame

        day, policy = context.partition_key, DriftPolicy.of(system)
        with warehouse.get_connection(names.system) as con:
            reference = load_reference(con)
            if reference is None:
                raise ValueError("no drift reference is stored: materialize drift_reference first")
            features = read_days(con, "features", [day])
        table = feature_drift_table(features, reference, policy)
        drifted, share, columns = day_verdict(table, policy.thresholds)
        with warehouse.get_connection(names.system) as con:
            replace_partitions(con, [PartitionWrite("feature_drift", table, day)])
        verdicts = verdict_frame(table)
        yield MaterializeResult(metadata={
            "dagster/row_count": len(table),
            "feature_rows": len(features),
            "reference_version": reference.model_version,
            "drifted": drifted, "drifted_share": share, "drifted_columns": ", ".join(columns) or "none",
            "verdicts": markdown_table(verdicts.round(4), max_rows=len(verdicts) or 1),
        })
        yield AssetCheckResult(
            check_name=FEATURE_DRIFT_CHECK, passed=not drifted, severity=AssetCheckSeverity.ERROR,
            metadata={"day": day, "drifted_share": share, "drifted_columns": ", ".join(columns) or "none",
                      "threshold": policy.thresholds.drifted_share, "reference_version": reference.model_version})


    @asset(
        key=names.key("prediction_drift"),
        automation_condition=condition_for(names, "prediction_drift"),
        partitions_def=partitions,
        deps=[names.key("batch_predictions"), names.key("drift_reference")],
        group_name=names.group("monitoring"),
        kinds={"duckdb", "scipy"},
        owners=names.owners,
        pool="warehouse",
        metadata={"partition_expr": PARTITION_COLUMN, "table": names.table("prediction_drift")},
    )
    @accounted
    def prediction_drift(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
        """The champion's scores of the day against its own holdout scores (PSI, KS, Wasserstein). No rows when the day
        was scored by a model without a stored score reference (the baseline, say). Deliberately no check: measured
        on February 2013, every day's scores drifted from a 7-day holdout (weather moves a day's delay risk)."""
        from mlsys_assets.core.monitoring import DriftPolicy, empty_drift_table, load_reference, prediction_drift_table

        day = context.partition_key
        where, params = in_partitions([day])
        with warehouse.get_connection(names.system) as con:
            scores = (read_frame(con, f"SELECT \"{system.score_column}\" AS probability, "
                                      f"CAST(model_version AS VARCHAR) AS model_version FROM "
                                      f"batch_predictions WHERE {where} AND role = 'champion'", params)
                      if table_exists(con, "batch_predictions") else None)
            version = str(scores["model_version"].mode().iloc[0]) if scores is not None and len(scores) else None
            reference = load_reference(con, version) if version is not None else None
        table = empty_drift_table()
        if version is None:
            status = "no champion predictions for the day"
        elif reference is None or reference.score is None:
            status = f"version {version} has no stored score reference (materialize drift_reference after promotion)"
        else:
            status = f"compared with the holdout scores of version {version}"
            table = prediction_drift_table(scores.loc[scores["model_version"] == version, "probability"], reference,
                                           DriftPolicy.of(system).thresholds)
        with warehouse.get_connection(names.system) as con:
            replace_partitions(con, [PartitionWrite("prediction_drift", table, day)])
        verdict = table.loc[table["test"] == "verdict", "drifted"]
        return MaterializeResult(metadata={
            "dagster/row_count": len(table),
            "model_version": version or "none",
            "scores": len(scores) if scores is not None else 0,
            "drifted": bool(verdict.iloc[0]) if len(verdict) else False,
            "status": status,
            "tests": markdown_table(table[["test", "value", "threshold", "drifted"]].round(4)),
        })


    def _labels_in(instance: DagsterInstance, day: str, delay_days: int) -> bool:
        """The labels of `day` are in once flight_features has been materialized for the day `delay_days` later."""
        found = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=features_key, asset_partitions=[_label_day(day, delay_days)]),
            limit=1)
        return bool(found.records)


    @asset(
        key=names.key("live_performance"),
        automation_condition=condition_for(names, "live_performance"),
        partitions_def=partitions,
        deps=[names.key("batch_predictions"), label_arrival, names.key("drift_reference")],
        group_name=names.group("monitoring"),
        kinds={"duckdb", "scikit-learn"},
        owners=names.owners,
        pool="warehouse",
        metadata={"partition_expr": PARTITION_COLUMN, "table": names.table("live_performance")},
        check_specs=[daily_check(PERFORMANCE_CHECK, "The champion's live ROC AUC clears the floor (error) and is "
                                                    "within max_drop of its holdout ROC AUC (warning).")],
    )
    @accounted
    def live_performance(context: AssetExecutionContext, warehouse: Warehouse):
        """Once the day's labels are in, every model that scored the day (batch champion and challenger, served rows)
        judged on them with the promotion gate's metrics, confusion counts and expected cost, for the day and a
        rolling window. Labels arrive `label_delay_days` late: until then the day has no rows, and rematerializing it
        after they land writes them."""
        from mlsys_assets.core.monitoring import (
            ENTITY,
            LABEL,
            CostPolicy,
            holdout_auc,
            live_performance_table,
            load_reference,
            performance_verdict,
            rolling_window,
            scored_predictions,
            window_days,
        )
        from mlsys_assets.core.report import cost_by_version

        day = context.partition_key
        if monitoring.performance_window not in ("rolling", "day"):
            raise ValueError(f"performance_window must be 'rolling' or 'day', not {monitoring.performance_window!r}")
        window = window_days(day, monitoring.rolling_days, system.partitions.grain)
        delay = system.prediction.label_delay
        ready = [d for d in window if _labels_in(context.instance, d, delay)]
        awaited = _label_day(day, delay)
        with warehouse.get_connection(names.system) as con:
            predictions = scored_predictions(system, con, ready)
            labels = read_days(con, "features", ready, columns=[PARTITION_COLUMN, key, label]).rename(
                columns={key: ENTITY, label: LABEL})
            table = live_performance_table(predictions, labels, day, ready, monitoring.rolling_days,
                                           CostPolicy.of(system), system.partitions.grain)
            replace_partitions(con, [PartitionWrite("live_performance", table, day)])
            judged = table[(table["source"] == "batch") & (table["role"] == "champion") & (table["span"] == (
                "day" if monitoring.performance_window == "day" else rolling_window(monitoring.rolling_days)))]
            version = str(judged["model_version"].iloc[0]) if len(judged) else None
            reference_auc = holdout_auc(load_reference(con, version), metric) if version else None
        status = ("labels in" if day in ready else
                  f"no labels yet: they arrive with features {awaited}; rematerialize this day then")
        costs = cost_by_version(table.assign(**{PARTITION_COLUMN: day}))
        yield MaterializeResult(metadata={
            "dagster/row_count": len(table),
            "labels": status, "label_day": awaited, "labelled_days_in_window": ", ".join(ready) or "none",
            "performance": markdown_table(table[["source", "role", "model_version", "span", "rows", *shown,
                                                 "expected_cost"]].round(4), max_rows=20),
            "expected_cost_by_version": markdown_table(costs.round(4)),
        })
        if day not in ready:  # nothing to judge yet: passing keeps the retraining sensor quiet until labels land
            yield AssetCheckResult(check_name=PERFORMANCE_CHECK, passed=True, metadata={"status": status, "day": day})
            return
        auc = float(judged[metric].iloc[0]) if len(judged) else None
        verdict = performance_verdict(auc, reference_auc, monitoring.min_live, monitoring.max_drop, metric,
                                      system.higher_is_better)
        yield AssetCheckResult(
            check_name=PERFORMANCE_CHECK, passed=verdict.passed,
            severity=AssetCheckSeverity.WARN if verdict.severity == "WARN" else AssetCheckSeverity.ERROR,
            metadata={"status": verdict.reason, "day": day, "window": monitoring.performance_window,
                      "model_version": version or "none", f"live_{metric}": auc if auc is not None else float("nan"),
                      f"holdout_{metric}": reference_auc if reference_auc is not None else float("nan"),
                      f"min_live_{metric}": monitoring.min_live, "max_drop": monitoring.max_drop})


    def _write(path: Path, text: str) -> None:
        """Write via a temporary file, so a reader never opens half a report."""
        from mlsys_assets.core.files import atomic_write_text

        atomic_write_text(path, text)


    @asset(
        key=names.key("monitoring_report"),
        deps=[names.key(n) for n in ("feature_drift", "prediction_drift", "live_performance")]
        + [names.key(f"validated_{source.name}") for source in system.sources],
        group_name=names.group("monitoring"),
        kinds={"html", "matplotlib"},
        owners=names.owners,
    )
    @accounted
    def monitoring_report(warehouse: Warehouse) -> MaterializeResult:
        """One self-contained HTML page (figures embedded as PNG, nothing fetched) under MLSYS_REPORTS_DIR, with a
        copy named for the last monitored day: drift over time and per column, live ROC AUC against the holdout,
        expected cost per model version, quarantine rate and which model scored each day."""
        from mlsys_assets.core.report import key_figures, load_report_data, render_report

        with warehouse.get_connection(names.system) as con:
            data = load_report_data(system, con)
        now = datetime.now(UTC)
        page = render_report(data, generated_at=now.strftime("%Y-%m-%d %H:%M UTC"))
        folder = Path(home_path("MLSYS_REPORTS_DIR", "reports"))
        folder.mkdir(parents=True, exist_ok=True)
        facts = key_figures(data)
        last_day = facts["last day"] if facts["last day"] != "none" else now.date().isoformat()
        stem = f"{names.name}_{REPORT_NAME}"
        latest, dated = folder / f"{stem}.html", folder / f"{stem}_{last_day}.html"
        for path in (latest, dated):
            _write(path, page)
        drifted_days = data.drift_days
        return MaterializeResult(metadata={
            "path": MetadataValue.path(str(latest)),
            "dated_copy": MetadataValue.path(str(dated)),
            "size_bytes": len(page.encode()),
            "days_monitored": facts["days monitored"],
            "drifted_days": int(drifted_days["drifted"].sum()) if len(drifted_days) else 0,
            "champion_version": facts["champion version"],
            "key_figures": MetadataValue.md("\n".join(["| figure | value |", "| --- | --- |",
                                                       *(f"| {k} | {v} |" for k, v in facts.items())])),
        })


    return [drift_reference, feature_drift, prediction_drift, live_performance, monitoring_report]
