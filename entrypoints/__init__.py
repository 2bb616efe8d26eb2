"""One module per entry point: wiring only, the step's options from its parameters
(`mlcycle.steps.params`), the step's code imported when its run has opened."""

import importlib


def later(module: str, name: str = "execute"):
    """`module.name`, imported on its first call: `--help` and a refused parameter never
    load the step's libraries, and its run opens before they load."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = f"{module}.{name}"
    return call
