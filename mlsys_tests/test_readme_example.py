"""The README's "Declare your own system" is code that runs: its Python and YAML blocks are read from the README,
declared, and a few hours of generated readings go through the generated graph."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    section = README.read_text().split("## Declare your own system", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def energy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`my_team/energy.py` exactly as the README shows it, importable."""
    package = tmp_path / "code" / "my_team"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "energy.py").write_text(blocks("python")[0])
    monkeypatch.syspath_prepend(str(package.parent))
    yield package
    for name in [m for m in sys.modules if m == "my_team" or m.startswith("my_team.")]:
        del sys.modules[name]


@pytest.fixture
def energy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, energy_package: Path) -> Path:
    from mlsys_tests.conftest import fresh_home

    return fresh_home(tmp_path, monkeypatch, systems="my_team.energy:energy")


def test_the_yaml_block_declares_the_python_block(energy_package: Path, tmp_path: Path) -> None:
    from my_team.energy import energy

    from mlsys_assets.component import system_from_yaml

    path = tmp_path / "defs.yaml"
    path.write_text(blocks("yaml")[0])
    assert system_from_yaml(path) == energy


def test_the_example_is_short_and_its_settings_are_listed(energy_home: Path) -> None:
    from mlsys_assets.settings import settings_rows

    assert len(blocks("python")[0].strip().splitlines()) <= 80
    variables = {row[0] for row in settings_rows()}
    assert {"MLSYS_ENERGY_WINDOW", "MLSYS_ENERGY_FLOOR", "MLSYS_ENERGY_COST_PER_UNIT"} <= variables
    assert not any(v.startswith("MLSYS_FLIGHTS_") for v in variables)  # MLSYS_SYSTEMS replaced the default


@pytest.mark.slow
def test_the_example_runs_through_the_generated_graph(energy_home: Path) -> None:
    import numpy as np
    import pandas as pd
    from dagster import DagsterInstance

    from mlsys_assets.core.landing import partition_keys
    from mlsys_assets.definitions import build_defs
    from mlsys_assets.systems import system_named
    from mlsys_tests.conftest import query

    system = system_named("energy")
    keys = partition_keys(system, "2024-03-01")[:3]
    rng = np.random.default_rng(7)
    for number, key in enumerate(keys):
        at = f"{key[:10]} {key[11:]}:00"
        rows = pd.DataFrame({"meter": [f"m{i:02d}" for i in range(10)], "reading_at": at,
                             "outdoor_c": rng.normal(10, 3, 10).round(1), "load_kw": rng.gamma(4, 2, 10).round(2)})
        if number == 1:
            rows.loc[3, "meter"] = "meter-3"  # breaks the schema's pattern: quarantined, named
        path = energy_home / "landing" / "energy" / "readings" / f"{key}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(path, index=False)
    defs = build_defs()
    with DagsterInstance.get() as instance:
        for key in keys:
            result = defs.resolve_job_def("energy_daily_pipeline").execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
            assert result.success, key
    assert query(energy_home, "SELECT count(*) FROM raw_readings", schema="energy") == [(30,)]
    assert query(energy_home, "SELECT count(*) FROM features", schema="energy") == [(29,)]
    reason = query(energy_home, "SELECT reason FROM quarantined_readings", schema="energy")[0][0]
    assert "meter" in reason and "meter-3" in reason
    assert query(energy_home, "SELECT DISTINCT model_version FROM batch_predictions", schema="energy") == \
        [("baseline",)]
