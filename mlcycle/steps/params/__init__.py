"""Each step's parameters: the frozen dataclass (the one home of the step's defaults)
that its entry point builds its options from, and the checks run before any run opens.

Apart from the steps on purpose: an entry point's `--help` and the refusal of a bad
parameter import these modules and nothing heavy (no MLflow, no pandas, no model
library), so a module here imports only the foundation and light names (closed sets in
`mlcycle.config`, `mlcycle.models.families.FAMILY_NAMES`), and what a check needs inside
the check. tests/unit/test_imports.py holds them to it. The step's module imports its
parameters from here (`from mlcycle.steps.etl import EtlParams` keeps working)."""
