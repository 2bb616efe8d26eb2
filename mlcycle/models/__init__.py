"""The models: the families behind one interface (families/), their preprocessing,
training and tuning, retrain's candidates, main's choice among candidates (selection)
and their blend (blending), how a model is logged (modelio) and what is served (serving,
the shared layer; network, served_forest and served_blend, the served models;
compiled_forest), batch scoring of a file (scoring), and late labels joined to the
scored rows with their realised metrics (labels).

Imports the foundation, `mlcycle.ingest` and `mlcycle.monitoring`."""
