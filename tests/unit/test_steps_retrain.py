"""The retrain step's pure parts: base-model checks, strategy choice, training rows,
tuned parameters."""

from mlcycle.data import Schema
from mlcycle.steps.retrain import base_mismatch
from tests.unit.networks import BIN, REG


class _Pyfunc:
    """What base_mismatch reads of a loaded pyfunc: its signature and its raw model."""

    def __init__(self, inputs=None, raw=None):
        from mlflow.models import Model, ModelSignature
        from mlflow.types import ColSpec, DataType
        from mlflow.types import Schema as TypeSchema

        self.metadata = Model()
        if inputs is not None:
            self.metadata.signature = ModelSignature(
                TypeSchema([ColSpec(DataType.double, c) for c in inputs])
            )
        self._raw = raw

    def get_raw_model(self):
        if self._raw is None:
            raise ValueError("no raw model")
        return self._raw

    def unwrap_python_model(self):
        raise ValueError("not a custom python model")


def test_base_mismatch_names_task_target_and_missing_columns(bin_model, reg_fit):
    from sklearn.dummy import DummyClassifier, DummyRegressor

    class Network(_Pyfunc):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def unwrap_python_model(self):
            return self

    assert base_mismatch(Network(bin_model), BIN) is None
    assert base_mismatch(Network(reg_fit[0]), REG) is None
    assert "it is a classification model and the data is regression" in base_mismatch(
        Network(bin_model), REG
    )
    other_target = Schema("price", "regression", ["x", "z"], ["c"])
    assert "it predicts 'y', not the data's target 'price'" in base_mismatch(
        Network(reg_fit[0]), other_target
    )
    fewer = Schema("y", "regression", ["x"], ["c"])
    assert base_mismatch(Network(reg_fit[0]), fewer) == "it reads columns the data lacks (z)"
    more = Schema("y", "regression", ["x", "z", "w"], ["c"])
    assert base_mismatch(Network(reg_fit[0]), more) is None  # a new column is no obstacle

    # Any other model: its signature's columns and, for sklearn, its estimator type.
    forest_like = _Pyfunc(["x", "z", "c"], DummyRegressor())
    assert base_mismatch(forest_like, REG) is None
    assert base_mismatch(_Pyfunc(["x", "z", "c"], DummyClassifier()), REG) == (
        "it is a classification model and the data is regression"
    )
    assert base_mismatch(_Pyfunc(["tenure", "x"], DummyClassifier()), REG) == (
        "it is a classification model and the data is regression; "
        "it reads columns the data lacks (tenure)"
    )
    assert base_mismatch(_Pyfunc(), REG) is None  # says nothing: scoring will tell
