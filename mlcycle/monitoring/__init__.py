"""Measuring models and data: metrics and evaluation on the splits (metrics, evaluate),
the promotion gate's paired bootstrap (gate) and its decision with reasons (promotion),
drift and data quality (drift, quality), the monitor's history, charts and tables, the
report with its Evidently workspace, what a monitor run found and how it is
published once (comparison, publish), and a scored batch monitored without labels:
measured (unlabelled: its performance estimated by estimation and estimators) and
published once (batch_page).

Imports the foundation and `mlcycle.ingest`. It sits below `models` because the models
wing measures with it: retrain's candidates are picked by the gate, tuning scores with
evaluate. Alias moves and the registry are `mlcycle.lifecycle`'s: the monitor step hands
their results in as plain values."""
