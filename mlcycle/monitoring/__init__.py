"""Measuring models and data: metrics and evaluation on the splits (metrics, evaluate),
the promotion gate's paired bootstrap (gate), drift and data quality (drift, quality),
the monitor's history, charts and tables, and the report with its Evidently workspace.

Imports the foundation and `mlcycle.ingest`. It sits below `models` because the models
wing measures with it: retrain's candidates are picked by the gate, tuning scores with
evaluate."""
