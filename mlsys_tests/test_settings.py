"""Settings: defaults under MLSYS_HOME, overrides by environment, and the docs/settings.md table listing them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsys_assets.resources import LandingZone, QualityPolicy, Warehouse
from mlsys_assets.settings import settings_rows

SETTINGS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_paths_default_under_mlsys_home(mlsys_home: Path) -> None:
    assert Warehouse.from_env().database == str(mlsys_home / "warehouse.duckdb")
    assert LandingZone.from_env().path == str(mlsys_home / "landing")


def test_environment_overrides_each_setting(mlsys_home: Path, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("MLSYS_WAREHOUSE", str(tmp_path / "elsewhere.duckdb"))
    monkeypatch.setenv("MLSYS_MAX_QUARANTINE_RATE", "0.25")
    assert Warehouse.from_env().database == str(tmp_path / "elsewhere.duckdb")
    assert QualityPolicy.from_env().max_quarantine_rate == 0.25
    monkeypatch.setenv("MLSYS_MAX_QUARANTINE_RATE", "a lot")
    with pytest.raises(ValueError, match="MLSYS_MAX_QUARANTINE_RATE='a lot'"):
        QualityPolicy.from_env()


def test_run_config_overrides_a_resource(defs, instance, mlsys_home: Path) -> None:
    from mlsys_tests.conftest import DAYS

    job = defs.resolve_job_def("flights_daily_pipeline")
    result = job.execute_in_process(
        partition_key=DAYS[1], instance=instance, raise_on_error=False,
        run_config={"resources": {"quality": {"config": {"max_quarantine_rate": 0.0}}}})
    assert result.success
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    by_check = {(e.asset_key.path[-1], e.check_name): e.passed for e in evaluations}
    assert by_check[("validated_weather", "quarantine_rate_below_threshold")] is False  # one bad row > 0.0
    assert by_check[("validated_weather", "no_rows_lost")] is True


def test_settings_page_documents_every_setting() -> None:
    text = SETTINGS_PAGE.read_text()
    missing = [env for env, _, _ in settings_rows() if f"`{env}`" not in text]
    assert not missing, f"settings missing from the docs/settings.md table: {missing}"


def test_a_source_may_declare_its_own_quarantine_limit(instance, mlsys_home: Path) -> None:
    """A feed's declared `max_quarantine_rate` replaces the policy's limit for its quarantine check: the weather day
    with one bad row of 72 (1.4%) fails the policy's 1% and passes a declared 5%."""
    from dataclasses import replace

    from dagster import Definitions

    from mlsys_assets.definitions import build_defs
    from mlsys_assets.engine import system_definitions
    from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM

    lenient = replace(FLIGHTS_SYSTEM, sources=[replace(s, max_quarantine_rate=0.05) if s.name == "weather" else s
                                               for s in FLIGHTS_SYSTEM.sources])
    outcomes = {}
    for name, system in (("policy", FLIGHTS_SYSTEM), ("declared", lenient)):
        defs = Definitions.merge(Definitions(resources=build_defs().resources), system_definitions(system))
        result = defs.resolve_job_def("flights_daily_pipeline").execute_in_process(
            partition_key=DAYS[1], instance=instance, raise_on_error=False)
        assert result.success
        outcomes[name] = next(e.event_specific_data for e in result.all_events
                              if e.event_type_value == "ASSET_CHECK_EVALUATION"
                              and e.event_specific_data.check_name == "quarantine_rate_below_threshold"
                              and e.event_specific_data.asset_key.path[-1] == "validated_weather")
    assert outcomes["policy"].passed is False and outcomes["declared"].passed is True
    assert outcomes["declared"].metadata["threshold"].value == 0.05
    assert outcomes["declared"].metadata["threshold_from"].value == "the declaration"
