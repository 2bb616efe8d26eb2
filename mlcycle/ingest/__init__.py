"""Data in: reading CSV and Parquet files (csvread, data), the schema, splitting with the
leak check (split), the etl run's splits read back (datasets), the generator of the bundled
data (datagen), and the inference log every scored batch is kept in (inference).

Imports only the foundation (config, errors, params, signals, telemetry)."""
