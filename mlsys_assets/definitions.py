"""The code location: every declared system's generated graph, plus what the systems share (resources, alerts,
the automation sensor, the failure sensors and the executor)."""

from dagster import Definitions

from mlsys_assets.automation import alerts, automation_sensor, check_failure_alert_sensor, run_failure_alert_sensor
from mlsys_assets.deployment import executor_from_env
from mlsys_assets.engine import system_definitions
from mlsys_assets.resources import AutomationPolicy, LandingZone, MlflowStore, QualityPolicy, Warehouse
from mlsys_assets.systems import declared_systems


def build_defs() -> Definitions:
    """The definitions, with settings read from the environment as it is now (tests build their own)."""
    shared = Definitions(
        assets=[alerts],
        sensors=[automation_sensor, run_failure_alert_sensor, check_failure_alert_sensor],
        resources={
            "warehouse": Warehouse.from_env(),
            "landing": LandingZone.from_env(),
            "quality": QualityPolicy.from_env(),
            "mlflow_store": MlflowStore.from_env(),
            "automation": AutomationPolicy.from_env(),
        },
        executor=executor_from_env(),  # MLSYS_EXECUTOR: in_process, multiprocess or k8s; the assets stay the same
    )
    return Definitions.merge(shared, *(system_definitions(system) for system in declared_systems()))


defs = build_defs()
