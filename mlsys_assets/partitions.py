"""The daily partitions every dated asset shares: one partition per day of the feed (2013 by default)."""

from __future__ import annotations

import os
from datetime import date, timedelta

from dagster import DailyPartitionsDefinition

FIRST_DAY_ENV, LAST_DAY_ENV = "MLSYS_FIRST_DAY", "MLSYS_LAST_DAY"
DEFAULT_FIRST_DAY, DEFAULT_LAST_DAY = "2013-01-01", "2013-12-31"


def daily_partitions_from_env() -> DailyPartitionsDefinition:
    """Days from MLSYS_FIRST_DAY to MLSYS_LAST_DAY inclusive."""
    first = os.environ.get(FIRST_DAY_ENV) or DEFAULT_FIRST_DAY
    last = date.fromisoformat(os.environ.get(LAST_DAY_ENV) or DEFAULT_LAST_DAY)
    return DailyPartitionsDefinition(start_date=first, end_date=(last + timedelta(days=1)).isoformat())


daily_partitions = daily_partitions_from_env()
