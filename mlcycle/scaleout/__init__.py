"""Scale-out: a Spark session and Spark scoring (spark_session, spark_scoring, and
spark_udf: how the model is applied there), the team tracking server's client settings
(remote) and Optuna's shared storage (optuna_storage).

Imports the foundation, `mlcycle.ingest`, `mlcycle.monitoring` and `mlcycle.models`
(Spark scores with the models' chunk typing)."""
