"""A model's life in the tracking store and registry: versions and URIs (registry), the
one owner of alias moves (aliases), their record (ledger), the data a version learned
from (lineage), main's cache of finished runs (workflow, whose code version the
ledger records), when to retrain (trigger, watch's pure decision) and the events posted
to an alert_url (alerts).

Imports the foundation, `mlcycle.ingest` and `mlcycle.monitoring` (a promotion's moves
follow the gate's decision)."""
