"""Landing files: the default feed, and what a broken file does (rejected, naming the file and the problem)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from mlsys_assets.core.landing import LandingFileError, land_default_data, read_landing_file
from mlsys_assets.core.sources import columns_of, file_for
from mlsys_assets.systems.flights.data import read_default_source
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM

FLIGHTS = FLIGHTS_SYSTEM.source("flights")
WEATHER = FLIGHTS_SYSTEM.source("weather")


def test_landed_day_holds_exactly_that_days_rows(landed_days: Path) -> None:
    flights = read_default_source("flights")
    expected = ((flights["month"] == "2") & (flights["day"] == "11")).sum()
    landed = read_landing_file(file_for(landed_days, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0]), FLIGHTS)
    assert len(landed.frame) == expected > 500
    assert landed.frame["parse_errors"].isna().all()
    assert landed.frame["source_row"].tolist() == list(range(2, expected + 2))
    assert str(landed.frame["year"].dtype) == "Int64" and landed.frame["dep_delay"].dtype == "float64"


def test_landing_again_rewrites_nothing(landed_days: Path, tmp_path: Path) -> None:
    target = tmp_path / "landing"
    first = land_default_data(FLIGHTS_SYSTEM, target, DAYS[0])
    again = land_default_data(FLIGHTS_SYSTEM, target, DAYS[0])
    assert first == {"flights": 1, "weather": 1}
    assert again == {"flights": 0, "weather": 0}
    assert (file_for(target, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0]).read_bytes()
            == file_for(landed_days, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0]).read_bytes())


def _good_text(landed_days: Path) -> str:
    return file_for(landed_days, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0]).read_text()


def _without_column(text: str, name: str) -> str:
    """The file with one column dropped from the header and every row."""
    lines = list(csv.reader(io.StringIO(text, newline="")))
    drop = lines[0].index(name)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([line[:drop] + line[drop + 1:] for line in lines])
    return out.getvalue()


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda text: None, "file is missing"),
        (lambda text: b"", "file is empty"),
        (lambda text: text.encode()[:-40], "truncated: the last line has no line end"),
        (lambda text: text.replace("\n", "\n2013,2,11,1\n", 1).encode(), "line 2 has 4 fields, the header has 19"),
        (lambda text: text.encode("utf-16"), "not UTF-8"),
        (lambda text: bytes(range(256)) * 4, "not UTF-8"),
        (lambda text: _without_column(text, "carrier").encode(), "missing columns ['carrier']"),
        (lambda text: text.replace("dest,", "origin,", 1).encode(), "duplicated column names"),
    ],
    ids=["missing", "empty", "truncated", "short-line", "utf16", "random-bytes", "missing-column", "dup-header"],
)
def test_broken_file_is_rejected_naming_file_and_problem(landed_days: Path, tmp_path: Path, mutate, problem) -> None:
    path = tmp_path / "2013-02-11.csv"
    content = mutate(_good_text(landed_days))
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LandingFileError) as raised:
        read_landing_file(path, FLIGHTS)
    assert str(path) in str(raised.value)
    assert problem in raised.value.problem


def test_values_that_do_not_parse_are_kept_with_the_problem(landed_days: Path, tmp_path: Path) -> None:
    lines = _good_text(landed_days).splitlines(keepends=True)
    header = lines[0].strip().split(",")
    row = lines[1].split(",")
    row[header.index("dep_delay")] = "soon"
    row[header.index("flight")] = "12.5"
    lines[1] = ",".join(row)
    path = tmp_path / "bad-values.csv"
    path.write_text("".join(lines))
    frame = read_landing_file(path, FLIGHTS).frame
    assert len(frame) == len(lines) - 1
    # one problem per column, in the schema's column order (dep_delay comes before flight)
    assert frame.loc[0, "parse_errors"] == "dep_delay='soon': not a number; flight='12.5': not an integer"
    assert frame["parse_errors"].iloc[1:].isna().all()


def test_reordered_and_extra_columns_are_read_by_name(landed_days: Path, tmp_path: Path) -> None:
    original = pd.read_csv(file_for(landed_days, FLIGHTS_SYSTEM, WEATHER, DAYS[0]), dtype=str, keep_default_na=False)
    shuffled = original[list(reversed(original.columns))].assign(station_note="ok")
    path = tmp_path / "weather.csv"
    shuffled.to_csv(path, index=False)
    landed = read_landing_file(path, WEATHER)
    direct = read_landing_file(file_for(landed_days, FLIGHTS_SYSTEM, WEATHER, DAYS[0]), WEATHER)
    columns = list(columns_of(WEATHER).names)
    pd.testing.assert_frame_equal(landed.frame[columns], direct.frame[columns])
    assert landed.extra_columns == ["station_note"]
    assert json.loads(landed.frame.loc[0, "extra_fields"]) == {"station_note": "ok"}
