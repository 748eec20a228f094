"""Dagster's `dg` CLI from the repository root: `[tool.dg]` in pyproject.toml makes the root a dg project whose code
location is `mlsys_assets.definitions`, and `mlsys dg ...` runs dg on the project's instance (MLSYS_HOME/dagster)
instead of the throwaway one dg uses without DAGSTER_HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = "2013-02-11"


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a user with only MLSYS_HOME set: no other MLSYS_* variable and no DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSYS_") and k != "DAGSTER_HOME"}
    # this checkout's package, whatever the virtual environment has installed; and the venv counts as activated
    env.update(MLSYS_HOME=str(home), PYTHONPATH=str(ROOT), VIRTUAL_ENV=sys.prefix)
    return env


def run(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=ROOT, env=clean_env(home), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def listed_assets(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """`dg list defs --json` from the repository root: the assets' entries."""
    done = run([str(BIN / "dg"), "list", "defs", "--json"], tmp_path_factory.mktemp("dg") / "mlsys")
    return json.loads(done.stdout)["assets"]


def test_dg_check_defs_loads_the_code_location(tmp_path: Path) -> None:
    done = run([str(BIN / "dg"), "check", "defs"], tmp_path / "mlsys")
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_dg_list_defs_lists_the_assets(listed_assets: list[dict], defs) -> None:
    """The same asset keys as the definitions built in-process (names are not hard-coded: they may change)."""
    keys = [asset["asset_key"] for asset in listed_assets]
    assert sorted(keys) == sorted(key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys())
    assert len(keys) > 10
    assert [key for key in keys if "raw_flights" in key], keys


def test_mlsys_dg_hands_every_argument_to_dg_on_a_prepared_instance(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Leading options (`--help`, `-v`) reach dg too, and the instance has its dagster.yaml before dg starts."""
    from mlsys_assets import cli

    for name in list(os.environ):
        if name.startswith("MLSYS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path / "mlsys"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append((path, argv)))
    assert cli.main(["dg", "--help"]) == 0
    assert cli.main(["dagster", "asset", "materialize", "--select", "x", "-m", "mlsys_assets.definitions"]) == 0
    assert calls == [(str(BIN / "dg"), [str(BIN / "dg"), "--help"]),
                     (str(BIN / "dagster"), [str(BIN / "dagster"), "asset", "materialize", "--select", "x", "-m",
                                             "mlsys_assets.definitions"])]
    assert os.environ["DAGSTER_HOME"] == str(tmp_path / "mlsys" / "dagster")
    assert "EmbeddedRunStorage" in (tmp_path / "mlsys" / "dagster" / "dagster.yaml").read_text()


@pytest.mark.slow
def test_mlsys_dg_launch_records_the_run_in_the_project_instance(tmp_path: Path, landed_days: Path,
                                                                 listed_assets: list[dict]) -> None:
    """A fresh MLSYS_HOME (no instance yet) with landed files: `mlsys dg launch` writes the instance's dagster.yaml
    and the run is in $MLSYS_HOME/dagster, not in a throwaway instance."""
    from dagster import AssetKey, DagsterInstance, DagsterRunStatus

    (key,) = [asset["asset_key"] for asset in listed_assets if "raw_flights" in asset["asset_key"]]
    home = tmp_path / "mlsys"
    shutil.copytree(landed_days, home / "landing")
    run([sys.executable, "-m", "mlsys_assets.cli", "dg", "launch", "--assets", key, "--partition", DAY], home)

    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        records = instance.get_run_records()
        assert [record.dagster_run.status for record in records] == [DagsterRunStatus.SUCCESS]
        run_ = records[0].dagster_run
        assert run_.tags["dagster/partition"] == DAY
        assert run_.asset_selection == {AssetKey.from_user_string(key)}
        event = instance.get_latest_materialization_event(AssetKey.from_user_string(key))
        assert event is not None and event.run_id == run_.run_id
        assert event.asset_materialization.partition == DAY
