"""The traffic system's validation rules (imported only where validation runs: pandera costs ~1 s)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

WEATHER = ["Clear", "Clouds", "Drizzle", "Fog", "Haze", "Mist", "Rain", "Smoke", "Snow", "Squall", "Thunderstorm"]


class VolumeSchema(pa.DataFrameModel):
    """One hour at the counting station: its weather and, once counted, the cars that passed westbound."""

    date_time: Series[pd.Timestamp] = pa.Field(description="The hour, local time (Minneapolis).")
    holiday: Series[str] = pa.Field(nullable=True, description="The holiday's name on its first hour, else None.")
    temp: Series[float] = pa.Field(ge=220, le=330, description="Average temperature in kelvin.")
    rain_1h: Series[float] = pa.Field(ge=0, le=100, description="Rain in the hour, mm.")
    snow_1h: Series[float] = pa.Field(ge=0, le=50, description="Snow in the hour, mm.")
    clouds_all: Series[pd.Int64Dtype] = pa.Field(ge=0, le=100, description="Cloud cover, percent.")
    weather_main: Series[str] = pa.Field(isin=WEATHER, description="The weather, in one word.")
    weather_description: Series[str] = pa.Field(description="The weather, in a few words.")
    traffic_volume: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0, le=10_000,
                                                     description="Cars counted westbound in the hour.")

    class Config:
        strict = False
        coerce = False
