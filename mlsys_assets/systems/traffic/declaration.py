"""The traffic system, declared: how many cars will pass westbound on I-94 in a given hour, given its weather?

Where it differs from flights: another domain, a regression (mean absolute error, lower is better, costs per car
mis-forecast), hourly rows in daily partitions, one feed with the weather in its rows and no lookup source, and
real untidy data (repeated hours, impossible temperatures) that the schema quarantines.
"""

from mlsys_assets.declaration import Features, Gate, Model, Monitoring, Partitions, Prediction, Source, System
from mlsys_assets.systems.traffic import features as traffic_features

traffic = System(
    name="traffic",
    description="Hourly westbound traffic on I-94 between Minneapolis and St Paul (MnDOT station 301, UCI data, "
                "2012-2018) with the hour's weather; predicts the number of cars in the hour.",
    sources=[
        Source(
            name="volume",
            schema="mlsys_assets.systems.traffic.schemas:VolumeSchema",
            key=["date_time"],
            partition_by="date_time",
            description="One hour at the counting station: weather, and the cars counted once the hour is over.",
            # the feed repeats an hour once for each extra weather condition (16% of its rows): the first is kept,
            # the repeats are quarantined as repeated keys, so a day may lose up to a third of its rows
            max_quarantine_rate=0.4,
        ),
    ],
    prediction=Prediction(
        entity="volume",
        label="traffic_volume",
        task="regression",
        label_delay=1,
        outcome_columns=["traffic_volume"],
        request_columns=["date_time", "temp", "rain_1h", "snow_1h", "clouds_all", "weather_main"],
    ),
    features=Features(
        build=traffic_features.features,
        row=traffic_features.row,
        categorical=traffic_features.CATEGORICAL,
        numeric=traffic_features.NUMERIC,
        id_column="reading_id",
        time_column="reading_date",
    ),
    model=Model(baseline_by=["hour", "is_weekend"], window=42, holdout=7, registered_name="traffic_volume"),
    gate=Gate(metric="mae", min_improvement=5.0, floor=450.0, slices=["weather_main"], tolerance=120.0,
              slice_min_rows=40),
    monitoring=Monitoring(
        # one value a day
        ignore=["day_of_week", "is_weekend", "is_holiday"],
        # 24 strongly related hours a day: judged by their shift against the reference, not a test on 24 points
        day_level=["temp_c", "clouds"],
        drifted_share=0.3,
        min_live=500.0,
        max_drop=150.0,
        cost_per_unit=0.02,
    ),
    partitions=Partitions(grain="daily", start="2012-10-02", end="2018-09-30"),
    default_data="mlsys_assets.systems.traffic.data:default_partitions",
    # autumn into winter 2016: the first model, the cold arriving (drift), retraining
    demo=("2016-09-01", "2016-11-20"),
)
