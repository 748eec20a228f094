"""Dagster's partitions definition of a declared system: hourly, daily or weekly, from its first to its last date.

Keys are the ones `core.partitioning` computes without Dagster (a test holds the two equal).
"""

from __future__ import annotations

from datetime import date, timedelta

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    TimeWindowPartitionsDefinition,
    WeeklyPartitionsDefinition,
)

from mlsys_assets.declaration import Partitions


def partitions_def(partitions: Partitions) -> TimeWindowPartitionsDefinition:
    """Every partition that starts between `start` and `end` (dates, inclusive); weeks start on Mondays."""
    # Dagster keeps the partitions that END by end_date: one step past the last start date keeps every one that
    # starts on it (a week that starts on `end` ends 7 days later)
    end = (date.fromisoformat(partitions.end) + timedelta(days=1)).isoformat()
    if partitions.grain == "hourly":
        return HourlyPartitionsDefinition(start_date=f"{partitions.start}-00:00", end_date=f"{end}-00:00")
    if partitions.grain == "weekly":
        week_end = (date.fromisoformat(partitions.end) + timedelta(days=7)).isoformat()
        return WeeklyPartitionsDefinition(start_date=partitions.start, end_date=week_end, day_offset=1)
    return DailyPartitionsDefinition(start_date=partitions.start, end_date=end)
