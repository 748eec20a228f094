"""MLflow leaves nothing behind where a command was started: no `mlruns/` or `mlartifacts/` folder in the current
directory (`mlsys mlflow` made `mlruns/0` there) and no "Default" experiment in the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def test_a_new_store_has_only_the_systems_experiments(mlsys_home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsys_assets.resources import MlflowStore
    from mlsys_tests.conftest import FLIGHTS_SYSTEM

    started_in = tmp_path / "elsewhere"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    registry = MlflowStore.from_env().registry(FLIGHTS_SYSTEM)
    registry.activate()
    registry.activate()  # again: nothing changes
    assert [e.name for e in registry.client.search_experiments()] == ["flight_delay"]
    assert list(started_in.iterdir()) == []


@pytest.mark.slow
def test_mlsys_mlflow_writes_nothing_where_it_is_started(mlsys_home: Path, tmp_path: Path) -> None:
    from mlsys_assets.core.server.command import free_port

    started_in = tmp_path / "elsewhere"
    started_in.mkdir()
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "mlsys"), "mlflow", "--port", str(port)],
                               cwd=started_in, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search"
                                            "?max_results=10", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the MLflow UI did not start"
                time.sleep(0.5)
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert list(started_in.iterdir()) == []
    assert (mlsys_home / "mlflow" / "artifacts").is_dir()
