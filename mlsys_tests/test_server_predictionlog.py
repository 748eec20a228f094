"""The generic prediction log (mlsys_assets/core/server/predictionlog.py), on real files and a real writer thread:
rows land in one folder per declared partition, everything else in one `out_of_range` folder, a full disk or a
failed write is counted and shown without paths, old files are deleted, and a partition reads back typed."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsys_assets.core.server.predictionlog import OUT_OF_RANGE, PredictionLog, jsonable, read_prediction_log

CATEGORICAL = ("carrier",)
NUMERIC = ("distance", "temp")
FRAME_DTYPES = {
    "request_id": "str", "row": "int64", "served_at": "datetime64[us]", "flight_id": "str", "partition": "str",
    "role": "str", "model_name": "str", "model_version": "str", "probability": "float64", "predicted_label": "Int64",
    "is_fallback": "bool", "latency_ms": "float64", "context_source": "str", "request": "str", "carrier": "str",
    "distance": "float64", "temp": "float64",
}


def record(request_id: str = "r0", row: int = 0, partition: str | None = "2013-02-12", **fields: object) -> dict:
    base = {"request_id": request_id, "row": row, "served_at": "2026-01-01T02:00:00+02:00", "flight_id": "f1",
            "partition": partition, "role": "champion", "model_name": "flights", "model_version": "3",
            "probability": 0.25, "predicted_label": 0, "is_fallback": False, "latency_ms": 1.5,
            "context_source": {"weather": "online", "at": "2013-02-12"}, "request": {"carrier": "B6", "distance": 944},
            "features": {"carrier": "B6", "distance": 944.0, "temp": None}}
    return base | fields


def read(partition: str, directory: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    return read_prediction_log(partition, directory, CATEGORICAL, NUMERIC, "flight_id", "probability")


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_rotates_past_max_file_bytes_into_files_of_this_process(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_file_bytes=600)
    for n in range(6):
        assert log.append(lambda n=n: [record(f"r{n}")])
        assert log.flush()  # rotation happens between writes; a write holds everything queued meanwhile
    log.close()
    files = sorted((tmp_path / "2013-02-12").glob("*.jsonl"))
    assert len(files) > 1 and all(f.name.startswith(f"{os.getpid()}-") for f in files)
    assert all(f.stat().st_size <= 600 for f in files)
    frame, counts = read("2013-02-12", tmp_path)
    assert sorted(frame["request_id"]) == [f"r{n}" for n in range(6)]
    assert counts == {"files": len(files), "lines": 6, "bad_lines": 0}
    assert log.status() | {"free_bytes": None} == {"logging": False, "written": 6, "dropped": 0, "problem": None,
                                                    "retention_days": None, "free_bytes": None}  # closed


def test_a_new_process_with_the_same_pid_never_appends_to_an_old_file(tmp_path: Path) -> None:
    old = tmp_path / "2013-02-12" / f"{os.getpid()}-0.jsonl"
    old.parent.mkdir()
    old.write_text(json.dumps(record("old")) + "\n")
    log = PredictionLog(tmp_path)
    log.append(lambda: [record("new")])
    log.close()
    assert old.read_text().count("\n") == 1 and (old.parent / f"{os.getpid()}-1.jsonl").exists()


def test_torn_and_non_object_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = tmp_path / "2013-02-12"
    folder.mkdir()
    good = json.dumps(record("good"))
    (folder / "1-0.jsonl").write_text("\n".join([good, "null", "3", "[]", '"text"', "", good]) + "\n")
    (folder / "2-0.jsonl").write_bytes(good.encode() + b"\n\xff\xfe\n" + b'{"request_id": "torn", "ro')
    frame, counts = read("2013-02-12", tmp_path)
    assert counts == {"files": 2, "lines": 3, "bad_lines": 6}
    assert frame["request_id"].tolist() == ["good"] * 3


def test_fields_of_the_wrong_type_skip_the_record_not_the_partition(tmp_path: Path) -> None:
    folder = tmp_path / "2013-02-12"
    folder.mkdir()
    wrong = [{"row": "x"}, {"row": None}, {"is_fallback": "no"}, {"served_at": "yesterday"}, {"served_at": 3},
             {"probability": "high"}, {"predicted_label": 0.5}, {"features": [1, 2]},
             {"features": {"distance": "far"}}, {"features": {"carrier": {"code": "B6"}}}, {"request_id": ["a"]}]
    lines = [json.dumps(record(f"bad{n}") | fields) for n, fields in enumerate(wrong)]
    (folder / "1-0.jsonl").write_text("\n".join([*lines, json.dumps(record("ok"))]) + "\n")
    frame, counts = read("2013-02-12", tmp_path)
    assert counts == {"files": 1, "lines": 1, "bad_lines": len(wrong)}
    assert frame["request_id"].tolist() == ["ok"]


def test_rows_outside_the_declared_partitions_share_one_folder(tmp_path: Path) -> None:
    asked: list[str] = []

    def in_range(key: str) -> bool:
        asked.append(key)
        return key < "2014"

    start = date(2050, 6, 1)
    rows = [record(f"r{n}", n, (start + timedelta(days=n)).isoformat()) for n in range(500)]  # into 2051
    log = PredictionLog(tmp_path, in_range=in_range)
    assert log.append(lambda: rows, rows=500)
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == [OUT_OF_RANGE]
    assert len(asked) == 500  # once per distinct key in a batch
    frame, counts = read(OUT_OF_RANGE, tmp_path)
    assert counts["lines"] == 500 and frame["partition"].iloc[-1] == (start + timedelta(days=499)).isoformat()


def test_unsafe_partition_names_go_to_out_of_range_and_nothing_leaves_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    unsafe = ["../x", "a/b", ".hidden", "..", "", "x" * 41, "a b", "a\nb", "c:\\x", None]
    log = PredictionLog(directory)
    log.append(lambda: [record(f"r{n}", n, key) for n, key in enumerate(unsafe)]
               + [record("odd", 0, partition=123), {k: v for k, v in record().items() if k != "partition"}])
    log.append(lambda: [record("fine", 0, "2013-02-12T05:00")])
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["log"]
    assert sorted(p.name for p in directory.iterdir()) == ["2013-02-12T05:00", OUT_OF_RANGE]
    assert read(OUT_OF_RANGE, directory)[1]["lines"] == len(unsafe) + 2
    with pytest.raises(ValueError, match="not a prediction log partition"):
        read("../log", directory)


def test_below_the_free_space_floor_rows_are_dropped_and_logging_recovers(tmp_path: Path) -> None:
    free = {"bytes": 10 << 20}
    seen: list[Path] = []

    def disk_usage(path: Path) -> int:
        seen.append(path)
        return free["bytes"]

    directory = tmp_path / "not yet created"
    log = PredictionLog(directory, min_free_bytes=100 << 20, disk_usage=disk_usage)
    log.recheck_seconds = 3600.0
    assert log.append(lambda: [record("a", 0), record("a", 1), record("a", 2)], rows=3)
    assert log.flush()
    status = log.status()
    assert status["logging"] is False and status["dropped"] == 3 and status["written"] == 0
    assert status["problem"] == "free space below 100 MB: answers are not being logged"
    assert status["free_bytes"] == 10 << 20 and str(tmp_path) not in json.dumps(status)
    assert seen and all(path.exists() for path in seen)  # the nearest folder that exists
    assert not log.append(lambda: [record("b")], rows=2)  # refused at once while degraded: nothing queued
    assert log.status()["dropped"] == 5 and not directory.exists()

    free["bytes"] = 1 << 30
    log.recheck_seconds = 0.0
    status = log.status()  # looks again: space came back while no request arrived
    assert status["logging"] is True and status["problem"] is None and status["free_bytes"] == 1 << 30
    assert log.append(lambda: [record("c")])
    log.close()
    assert read("2013-02-12", directory)[0]["request_id"].tolist() == ["c"]


def test_a_probe_batch_goes_through_to_look_at_the_disk_again(tmp_path: Path) -> None:
    free = {"bytes": 0}
    log = PredictionLog(tmp_path, min_free_bytes=1 << 20, disk_usage=lambda path: free["bytes"])
    log.recheck_seconds = 0.05
    log.append(lambda: [record("a")])
    assert log.flush() and not log.status()["logging"]
    free["bytes"] = 1 << 30
    time.sleep(0.1)
    assert log.append(lambda: [record("b")])  # the probe
    assert log.flush() and log.status()["logging"]
    log.close()
    assert log.written == 1 and log.dropped == 1


def test_a_failed_write_keeps_the_thread_alive_and_shows_no_path(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = PredictionLog(directory)
    log.append(lambda: [record("a")])
    assert log.flush() and log.status()["logging"]
    shutil.rmtree(directory)
    directory.write_text("a file where the log directory was")
    log.append(lambda: [record("b"), record("c", 1)])
    assert log.flush()
    status = log.status()
    assert status["logging"] is False and status["dropped"] == 2 and status["written"] == 1
    assert status["problem"].startswith(("NotADirectoryError: [Errno", "FileExistsError: [Errno"))
    assert str(tmp_path) not in json.dumps(status) and str(tmp_path) not in str(log.last_error)
    assert log._thread.is_alive()

    directory.unlink()
    log.append(lambda: [record("d")])
    log.close()
    assert log.status()["problem"] is None and log.written == 2
    assert read("2013-02-12", directory)[0]["request_id"].tolist() == ["d"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0o500")
def test_a_read_only_directory_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        log = PredictionLog(directory)
        log.append(lambda: [record("a")])
        log.close()
        assert log.status()["problem"] == "PermissionError: [Errno 13] Permission denied" and log.dropped == 1
    finally:
        directory.chmod(0o700)


def test_a_batch_that_cannot_be_built_costs_only_its_own_rows(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.append(lambda: [record("a")])
    log.append(lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    log.append(lambda: [record("b")])
    log.close()
    status = log.status()
    assert status["written"] == 2 and status["dropped"] == 1 and status["logging"] is False  # closed
    assert status["problem"] == "records could not be built: ZeroDivisionError: division by zero"


def test_append_after_close_is_refused_and_counted(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.close()
    assert not log.append(lambda: [record()], rows=4) and log.dropped == 4


def test_retention_deletes_old_files_and_their_emptied_folders_only(tmp_path: Path) -> None:
    old_time = time.time() - 10 * 86400
    for relative in ("2013-02-01/1-0.jsonl", "2013-02-12/1-0.jsonl", "2013-02-12/1-1.jsonl", "notes/old.txt"):
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        (tmp_path / relative).write_text(json.dumps(record(relative)) + "\n")
    for relative in ("2013-02-01/1-0.jsonl", "2013-02-12/1-0.jsonl", "notes/old.txt"):
        os.utime(tmp_path / relative, (old_time, old_time))
    log = PredictionLog(tmp_path, retention_days=7)
    log.append(lambda: [record("new", partition="2013-02-13")])  # the sweep ran first, at the thread's start
    assert log.flush()
    assert files_under(tmp_path) == ["2013-02-12", "2013-02-12/1-1.jsonl", "2013-02-13",
                                     f"2013-02-13/{os.getpid()}-0.jsonl", "notes", "notes/old.txt"]
    assert log.status()["retention_days"] == 7

    os.utime(tmp_path / "2013-02-12/1-1.jsonl", (old_time, old_time))
    log.append(lambda: [record("later", partition="2013-02-13")])
    assert log.flush() and (tmp_path / "2013-02-12/1-1.jsonl").exists()  # at most once an hour
    log.sweep_seconds = 0.0
    os.utime(tmp_path / f"2013-02-13/{os.getpid()}-0.jsonl", (old_time, old_time))  # even the file in use
    log.append(lambda: [record("last", partition="2013-02-13")])
    log.close()
    assert not (tmp_path / "2013-02-12").exists()
    assert read("2013-02-13", tmp_path)[0]["request_id"].tolist() == ["last"]  # written to a file claimed anew


def test_the_frame_has_fixed_columns_and_types_empty_and_full(tmp_path: Path) -> None:
    empty, counts = read("2013-02-12", tmp_path)
    assert counts == {"files": 0, "lines": 0, "bad_lines": 0} and len(empty) == 0
    assert empty.dtypes.astype(str).to_dict() == FRAME_DTYPES
    assert list(empty.columns) == list(FRAME_DTYPES)

    log = PredictionLog(tmp_path)
    log.append(lambda: [record("a"), record("a", 1, model_name=None, features={"carrier": 7, "distance": 1})])
    log.close()
    frame, _ = read("2013-02-12", tmp_path)
    assert frame.dtypes.astype(str).to_dict() == FRAME_DTYPES
    first = frame.iloc[0]
    assert first["served_at"] == pd.Timestamp("2026-01-01T00:00:00")  # +02:00 as naive UTC
    assert json.loads(first["context_source"]) == {"at": "2013-02-12", "weather": "online"}
    assert first["request"] == '{"carrier":"B6","distance":944}'  # sorted keys
    assert first["carrier"] == "B6" and first["distance"] == 944.0 and pd.isna(first["temp"])
    second = frame.iloc[1]
    assert pd.isna(second["model_name"]) and second["carrier"] == "7" and second["distance"] == 1.0


def test_a_regression_record_without_a_label_reads_as_null(tmp_path: Path) -> None:
    folder = tmp_path / "2013-02-12"
    folder.mkdir()
    regression = {key: value for key, value in record("reg", probability=12.5).items()
                  if key not in ("predicted_label", "context_source", "role")}
    (folder / "1-0.jsonl").write_text(json.dumps(regression) + "\n" + json.dumps(record("cls")) + "\n")
    frame, counts = read("2013-02-12", tmp_path)
    assert counts["bad_lines"] == 0
    assert frame["predicted_label"].tolist()[0] is pd.NA and frame["predicted_label"].tolist()[1] == 0
    assert frame["probability"].tolist() == [12.5, 0.25]
    assert pd.isna(frame["context_source"].iloc[0]) and pd.isna(frame["role"].iloc[0])


def test_jsonable_and_the_written_lines_are_strict_json(tmp_path: Path) -> None:
    assert jsonable(np.float64("nan")) is None and jsonable(float("inf")) is None
    assert jsonable(np.int64(3)) == 3 and type(jsonable(np.int64(3))) is int and jsonable(np.bool_(True)) is True
    assert jsonable(date(2013, 2, 12)) == "2013-02-12"
    assert jsonable(datetime(2013, 2, 12, 5, tzinfo=UTC)) == "2013-02-12T05:00:00+00:00"
    assert jsonable(pd.Timestamp("2013-02-12 05:00", tz="UTC")) == "2013-02-12T05:00:00+00:00"
    assert jsonable(np.datetime64("2013-02-12T05:00:00.123456789")) == "2013-02-12T05:00:00.123456"
    assert jsonable(np.datetime64("2013-02-12")) == "2013-02-12"
    assert jsonable(pd.NaT) is None and jsonable(np.datetime64("NaT")) is None and jsonable("x") == "x"

    log = PredictionLog(tmp_path)
    log.append(lambda: [record("np", np.int64(0), np.str_("2013-02-12"), probability=np.float32(0.5),
                               latency_ms=float("nan"), request={"when": pd.Timestamp("2013-02-12"), 1: (1, 2)},
                               features={"carrier": "B6", "distance": np.float64("inf"), "temp": np.array([1])})])
    log.close()
    line = next((tmp_path / "2013-02-12").glob("*.jsonl")).read_text()
    parsed = json.loads(line, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))
    assert parsed["request"] == {"when": "2013-02-12T00:00:00", "1": [1, 2]} and parsed["latency_ms"] is None
    assert parsed["features"]["distance"] is None and parsed["features"]["temp"] == [1]
