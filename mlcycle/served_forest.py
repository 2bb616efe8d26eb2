"""Where models logged before the package was grouped into wings find the forest's
pyfunc: their models-from-code file runs `from mlcycle.served_forest import ForestPyfunc`.
Only that name is kept here; the forest lives in `mlcycle.models.served_forest`."""

from mlcycle.models.served_forest import ForestPyfunc

__all__ = ["ForestPyfunc"]
