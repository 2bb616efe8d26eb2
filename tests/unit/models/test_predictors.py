"""How score reads a model it has no etl run for: the kinds of its columns come from the
signature, whatever types the signature holds."""

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

from mlcycle.models.predictors import inputs_for
from mlcycle.models.scoring import conform_chunk


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["amount"] * 2


def test_a_signature_with_an_any_column_is_read_without_a_type_error(tmp_path):
    signature = ModelSignature(
        inputs=Schema(
            [
                ColSpec(DataType.double, "amount"),
                ColSpec(DataType.string, "city"),
                ColSpec(AnyType(), "notes"),
            ]
        )
    )
    mlflow.pyfunc.save_model(tmp_path / "model", python_model=Echo(), signature=signature)
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    header = ["id", "amount", "city", "notes"]

    inputs = inputs_for(model, "models:/echo/1", None, ["id"], header, tmp_path / "in.csv")

    assert inputs.features == ["amount", "city", "notes"]
    assert inputs.numeric == ["amount"]
    assert inputs.categorical == ["city"]
    chunk = pd.DataFrame(
        {"id": [1, 2], "amount": ["1.5", "2"], "city": ["Lyon", None], "notes": [3, "x"]}
    )
    typed = conform_chunk(chunk, inputs, tmp_path / "in.csv", 0)
    assert typed["amount"].tolist() == [1.5, 2.0]
    assert typed["notes"].tolist() == [3, "x"]  # an Any column as it was read
