"""What the store knows about a model's loop: the pure part, labels of several feedback
files merged."""

import pandas as pd

from mlcycle.lifecycle.evidence import merged_labels


def test_labels_merged_from_several_files_keep_the_newest_label_of_a_prediction():
    old = pd.DataFrame({"prediction_id": ["a", "b"], "y": [1.0, 2.0]})
    new = pd.DataFrame({"prediction_id": ["b", "c"], "y": [3.0, 4.0]})
    merged = merged_labels([old, new])
    assert merged.set_index("prediction_id")["y"].to_dict() == {"a": 1.0, "b": 3.0, "c": 4.0}
