"""The meters test system's pandera schemas (imported only where validation runs)."""

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

ZONES = ["north", "south", "east"]


class ReadingSchema(pa.DataFrameModel):
    """One meter's reading for one hour: the load is the outcome."""

    meter: Series[str] = pa.Field(str_matches=r"^m\d{2}$")
    zone: Series[str] = pa.Field(isin=ZONES)
    reading_at: Series[pd.Timestamp]
    outdoor_c: Series[float] = pa.Field(nullable=True, ge=-40, le=50)
    load_kw: Series[float] = pa.Field(nullable=True, ge=0, le=500)

    class Config:
        strict = False
        coerce = False


class PriceSchema(pa.DataFrameModel):
    """The hour's energy price in a zone."""

    zone: Series[str] = pa.Field(isin=ZONES)
    price_at: Series[pd.Timestamp]
    price_eur: Series[float] = pa.Field(ge=0, le=1000)

    class Config:
        strict = False
        coerce = False
