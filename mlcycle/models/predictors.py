"""How batch scoring reads a loaded model: the columns it takes (`inputs_for`), and its
own predict (and predict_proba, columns in the order asked) on rows already typed by
`scoring.conform_chunk`, without MLflow's per-call input enforcement."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.types import DataType

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models import scoring
from mlcycle.models.network import network_of
from mlcycle.models.served_forest import forest_of
from mlcycle.monitoring.evaluate import PROBA_PARAMS

_NUMERIC_TYPES = {DataType.double, DataType.float, DataType.long, DataType.integer}


def _raw_model(pyfunc):
    try:
        return pyfunc.get_raw_model()
    except Exception:  # noqa: BLE001 - flavours without a raw model raise anything
        return None


def raw_classes(pyfunc) -> list | None:
    """The classes of a flavour's raw model (an sklearn classifier), else None."""
    classes = getattr(_raw_model(pyfunc), "classes_", None)
    return None if classes is None else list(classes)


def predictor_for(pyfunc, uri: str, classes: list | None) -> scoring.Predictor:
    """The model's own predict on rows `scoring.conform_chunk` already typed as MLflow's
    input enforcement would (measured on 50,000 loan rows: the enforcement alone costs
    0.6 s a chunk for the network, whose prediction costs 0.2 s, and 0.5 s for the
    forest). An mlcycle network or forest and an MLflow sklearn model are called
    directly, a forest on every core (its trees predict in threads); any other model
    through its pyfunc. Probabilities come in the order of `classes`."""
    network = network_of(pyfunc)
    if network is not None:
        proba = network.predict_proba if classes else None
        return _ordered(scoring.Predictor(network.predict, proba), network.classes_, classes)
    forest = forest_of(pyfunc)
    if forest is not None:
        # Chunks are batches scikit-learn walks faster than the compiled trees: its
        # Pipeline is read in a thread while the first chunk is parsed, and waited for.
        forest.prefetch()
        if not classes:
            return scoring.Predictor(forest.predict)
        order = _class_order(forest.classes_, classes, uri)

        def both(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
            labels, proba = forest.predict_with_proba(frame)
            return labels, proba[:, order]

        return scoring.Predictor(forest.predict, lambda f: both(f)[1], both)
    raw = _raw_model(pyfunc) if "sklearn" in pyfunc.metadata.flavors else None
    if raw is not None:
        _all_cores(raw)
        proba = raw.predict_proba if classes and hasattr(raw, "predict_proba") else None
        return _ordered(
            scoring.Predictor(raw.predict, proba), list(getattr(raw, "classes_", [])), classes
        )

    def predict(frame: pd.DataFrame) -> np.ndarray:
        out = pyfunc.predict(frame)
        return np.asarray(out.iloc[:, 0] if isinstance(out, pd.DataFrame) else out)

    if not classes:
        return scoring.Predictor(predict)

    def proba(frame: pd.DataFrame) -> np.ndarray:
        out = pd.DataFrame(pyfunc.predict(frame, params=PROBA_PARAMS))
        order = _class_order(list(out.columns), classes, uri)
        return out.to_numpy(dtype="float64")[:, order]

    return scoring.Predictor(predict, proba)


def _ordered(predictor: scoring.Predictor, has: list, classes: list | None) -> scoring.Predictor:
    """Probability columns reordered from the model's class order to `classes`."""
    if predictor.predict_proba is None or not classes:
        return scoring.Predictor(predictor.predict)
    order = _class_order(has, classes, "the model")
    proba = predictor.predict_proba
    return scoring.Predictor(predictor.predict, lambda frame: proba(frame)[:, order])


def _all_cores(estimator) -> None:
    """A forest predicts its trees in threads: on every core for a batch (its logged
    n_jobs=1 suits the served model's single rows). Predictions are the same."""
    # Imported here: a network's scoring never needs scikit-learn (~1.8 s of imports).
    from sklearn.ensemble._forest import BaseForest
    from sklearn.pipeline import Pipeline

    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if isinstance(final, BaseForest):
        final.set_params(n_jobs=-1)


def _class_order(has: list, wanted: list, uri: str) -> list[int]:
    names, wanted = [str(c) for c in has], [str(c) for c in wanted]
    if sorted(names) != sorted(wanted):
        raise MlcycleError(f"model {uri} answers classes {names}, its etl run names {wanted}")
    return [names.index(c) for c in wanted]


def inputs_for(
    pyfunc, uri: str, schema: Schema | None, drop_columns: list[str], header: list[str], path
) -> scoring.Inputs:
    """The model's columns and their kinds: from its etl schema, else its signature."""
    signature = pyfunc.metadata.get_input_schema()
    if signature is None or not signature.has_input_names():
        raise MlcycleError(
            f"model {uri} does not declare its input columns (no signature): "
            "score cannot tell which columns of the file it reads"
        )
    features = signature.input_names()
    if schema is not None:
        numeric, categorical = schema.numeric, schema.categorical
        classes = schema.classes if schema.task == "classification" else None
    else:
        # A column typed Any, an array or an object (not a DataType) is passed as read.
        types = {
            spec.name: spec.type if isinstance(spec.type, DataType) else None
            for spec in signature.inputs
        }
        numeric = [c for c in features if types[c] in _NUMERIC_TYPES]
        categorical = [c for c in features if types[c] == DataType.string]
        classes = raw_classes(pyfunc)
    return scoring.plan_inputs(header, features, numeric, categorical, drop_columns, classes, path)
