"""mlcycle: keep a tabular model healthy as its data drifts, as an MLflow Project."""

__version__ = "0.1.0"
