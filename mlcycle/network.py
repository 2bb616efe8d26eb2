"""Where models logged before the package was grouped into wings find the network's
pyfunc: their models-from-code file runs `from mlcycle.network import NetworkPyfunc`.
Only that name is kept here; the network lives in `mlcycle.models.network`."""

from mlcycle.models.network import NetworkPyfunc

__all__ = ["NetworkPyfunc"]
