"""score's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlcycle import config
from mlcycle.params import check, param
from mlcycle.scaleout import spark_session

# The batch that arrives after df_new.csv, the data `make run` trains and promotes on:
# what the champion of a fresh clone is asked to score next.
DEFAULT_INPUT = "data/stream/batch_01.csv"


@dataclass(frozen=True)
class ScoreParams:
    model_uri: str = param("", "model to score with; empty: models:/<model_name>@champion")
    model_name: str = param(
        config.DEFAULT_MODEL_NAME, "registered model name (default model and output folder)"
    )
    input: str = param(DEFAULT_INPUT, "CSV of the rows to score")  # noqa: A003 - the CLI name
    output: str = param(
        "",
        "Parquet file, or folder/ for a timestamped file in it; empty: "
        "predictions/<model_name>/<UTC time>.parquet; relative to where mlflow run started",
    )
    engine: str = param(
        "pandas",
        "pandas: chunks on this machine; spark: a Spark job (input CSV or Parquet, a file or "
        "a folder of parts; output a Parquet folder)",
        choices=("pandas", "spark"),
    )
    spark_master: str = param(
        spark_session.DEFAULT_MASTER,
        "Spark master of engine spark: local[*], local[N], spark://HOST:PORT, yarn, k8s://URL",
    )

    def validate(self) -> ScoreParams:
        check(self)
        spark_session.check_master(self.spark_master)
        return self


def input_path(path: str) -> Path:
    """A relative input is looked for where mlflow run was started, then in the project."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and (config.launcher_folder() / candidate).exists():
        return config.launcher_folder() / candidate
    return config.resolve_path(path)
