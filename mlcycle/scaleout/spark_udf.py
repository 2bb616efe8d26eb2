"""How a model is applied on Spark (`mlflow.pyfunc.spark_udf`): the result type asked
for, read from the model's declared output, the class order of its probabilities, and
how the workers get the model's environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from mlflow.types import DataType

from mlcycle.errors import MlcycleError

ENV_MANAGERS = ("local", "virtualenv", "uv", "conda")


@dataclass
class Prediction:
    """How the model answers on Spark: the label or value type, and for a classifier
    whose pyfunc takes predict_method, the order of its probability columns."""

    spark_type: str  # a Spark SQL type name: double, long, string, boolean...
    proba_classes: list | None = None  # the model's class order in predict_proba


# spark_udf's result type for the model's declared output; float and int widened as the
# pandas engine writes them (float64, int64).
_SPARK_TYPES = {
    DataType.double: "double",
    DataType.float: "double",
    DataType.long: "long",
    DataType.integer: "long",
    DataType.boolean: "boolean",
    DataType.string: "string",
}


def prediction_of(pyfunc) -> Prediction:
    """What spark_udf is asked to return: the type of the model's declared output, and the
    class order of its predict_proba when its pyfunc takes predict_method."""
    metadata = pyfunc.metadata
    output = metadata.get_output_schema()
    kind = output.inputs[0].type if output is not None and output.inputs else None
    if isinstance(kind, np.dtype):  # a tensor output: its numpy kind
        kind = {"f": DataType.double, "i": DataType.long, "u": DataType.long}.get(
            kind.kind, DataType.boolean if kind.kind == "b" else DataType.string
        )
    spark_type = _SPARK_TYPES.get(kind, "string" if kind is not None else "double")
    takes_method = metadata.get_params_schema() is not None and any(
        p.name == "predict_method" for p in metadata.get_params_schema().params
    )
    classes = None
    if takes_method:
        inner = getattr(pyfunc.unwrap_python_model(), "model", None)
        classes = list(getattr(inner, "classes_", []) or []) or None
    return Prediction(spark_type, classes)


def env_manager() -> str:
    """How spark_udf gives the workers the model's environment: `local` (the workers'
    own Python, PYSPARK_PYTHON), or built from the model's requirements on each worker."""
    value = os.environ.get("MLCYCLE_SPARK_ENV_MANAGER", "local")
    if value not in ENV_MANAGERS:
        raise MlcycleError(
            f"MLCYCLE_SPARK_ENV_MANAGER must be one of {', '.join(ENV_MANAGERS)}, got {value!r}"
        )
    return value
