"""A landing zone fed with generated garbage: nothing crashes the sensor, every unreadable file is reported by
name, and every row of every readable file ends up validated or quarantined with a reason."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest

from mlsys_assets.core.landing import land_default_data
from mlsys_assets.core.sources import file_for
from mlsys_tests.conftest import FLIGHTS_SYSTEM, query

GOOD = ("2013-03-01", "2013-03-10")


def rows_of(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = list(csv.reader(io.StringIO(path.read_text())))
    return lines[0], lines[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    path.write_bytes(buffer.getvalue().encode(encoding))


def hostile_feed(clean: Path, landing: Path, seed: int = 7) -> tuple[dict[Path, str], dict[str, str]]:
    """Rewrite days of a clean feed into the landing zone, each in its own way. Returns the files that must be
    rejected (with the word their problem must mention) and the readable flight days (with what was done)."""
    rng = random.Random(seed)
    days = [f"2013-03-{d:02d}" for d in range(1, 11)]
    def path(folder: Path, source: str, day: str) -> Path:  # <folder>/flights/<source>/<day>.csv
        return file_for(folder, FLIGHTS_SYSTEM, FLIGHTS_SYSTEM.source(source), day)

    for source in ("flights", "weather"):
        for day in days:  # weather as delivered, so readable flights have their weather
            path(landing, source, day).parent.mkdir(parents=True, exist_ok=True)
            path(landing, source, day).write_bytes(path(clean, source, day).read_bytes())
    flights = {day: rows_of(path(clean, "flights", day)) for day in days}
    target = {day: path(landing, "flights", day) for day in days}
    rejected: dict[Path, str] = {}
    readable: dict[str, str] = {}

    target[days[0]].write_bytes(bytes(rng.getrandbits(8) for _ in range(5000)))
    rejected[target[days[0]]] = ""  # random bytes: not UTF-8 or binary; any named problem will do
    header, rows = flights[days[1]]
    rows[3][header.index("dest")] = "Sào Paulo"
    write_rows(target[days[1]], header, rows, encoding="latin-1")
    rejected[target[days[1]]] = "UTF-8"
    target[days[2]].write_text("")
    rejected[target[days[2]]] = "empty"
    header, rows = flights[days[3]]
    keep = [i for i, name in enumerate(header) if name != "carrier"]
    write_rows(target[days[3]], [header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    rejected[target[days[3]]] = "missing columns"
    header, rows = flights[days[4]]
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    target[days[4]].write_text(text[: len(text) // 2])  # cut mid-line
    rejected[target[days[4]]] = "truncated"

    header, rows = flights[days[5]]
    order = list(range(len(header)))
    rng.shuffle(order)
    write_rows(target[days[5]], [header[i] for i in order], [[r[i] for i in order] for r in rows])
    readable[days[5]] = "columns reordered"
    header, rows = flights[days[6]]
    write_rows(target[days[6]], [*header, "gate", "note"], [[*r, str(rng.randint(1, 90)), "ok"] for r in rows])
    readable[days[6]] = "extra columns"
    header, rows = flights[days[7]]
    for i, value in ((0, "1e308"), (1, "-5000"), (2, "99999999999999999999"), (3, "NaN"), (4, "not a number")):
        rows[i][header.index("distance" if i % 2 else "dep_delay")] = value
    write_rows(target[days[7]], header, rows)
    readable[days[7]] = "huge, negative and unparsable numbers"
    header, rows = flights[days[8]]
    write_rows(target[days[8]], header, rows + rows[:25])
    readable[days[8]] = "duplicated rows"
    header, rows = flights[days[9]]
    write_rows(target[days[9]], header, rows)
    readable[days[9]] = "untouched"
    return rejected, readable


@pytest.mark.slow
def test_garbage_in_the_landing_zone_is_reported_or_quarantined_never_lost(
        defs, instance, mlsys_home: Path, tmp_path: Path) -> None:
    from mlsys_assets.core.alerts import read_alerts
    from mlsys_assets.replay import InProcessDaemon

    clean = tmp_path / "clean"
    land_default_data(FLIGHTS_SYSTEM, clean, *GOOD)
    rejected, readable = hostile_feed(clean, mlsys_home / "landing")
    daemon = InProcessDaemon(defs, instance)
    daemon.start()

    ingested = daemon.tick("flights_landing_files_sensor")  # must not raise, whatever the files hold
    assert all(run.success for run in ingested)
    flights_days = {run.partition for run in ingested if "flights/raw_flights" in run.assets}
    assert flights_days >= set(readable)
    assert not flights_days & {path.stem for path in rejected}
    alerts = read_alerts()
    reported = dict(zip(alerts["subject"], alerts["message"], strict=True))
    for path, word in rejected.items():
        assert str(path) in reported, f"{path} not reported"
        assert word in reported[str(path)], reported[str(path)]

    assert all(run.success for run in daemon.settle())
    for day, what in readable.items():
        raw, valid, quarantined = (
            query(mlsys_home, f"SELECT count(*) FROM {table} WHERE partition_date = ?", [day])[0][0]
            for table in ("raw_flights", "validated_flights", "quarantined_flights"))
        assert raw == valid + quarantined > 0, what
        reasons = query(mlsys_home, "SELECT count(*) FROM quarantined_flights WHERE partition_date = ? AND "
                                    "(reason IS NULL OR reason = '')", [day])[0][0]
        assert reasons == 0, what
    bad_numbers = query(mlsys_home, "SELECT count(*) FROM quarantined_flights WHERE partition_date = ?",
                        ["2013-03-08"])[0][0]
    assert bad_numbers >= 4  # 1e308, -5000, 20 digits, not a number (NaN reads as missing)
    duplicates = query(mlsys_home, "SELECT count(*) FROM quarantined_flights WHERE partition_date = ? AND "
                                   "failed_checks LIKE '%unique%'", ["2013-03-09"])[0][0]
    assert duplicates == 25
    extra = query(mlsys_home, "SELECT count(*) FROM validated_flights WHERE partition_date = ? AND "
                              "extra_fields LIKE '%gate%'", ["2013-03-07"])[0][0]
    assert extra > 0
