"""The production replay's schedule and the labels it sends back, on inline frames."""

import pandas as pd

from mlcycle.replay import arrivals, labels_file


def test_labels_arrive_one_batch_later_and_the_owed_ones_after_the_last_batch():
    assert arrivals(4, 1) == [[], [0], [1], [2, 3]]


def test_with_no_delay_each_batch_is_labelled_right_after_it_is_scored():
    assert arrivals(3, 0) == [[0], [1], [2]]


def test_a_delay_longer_than_the_stream_sends_every_label_at_the_end():
    assert arrivals(2, 5) == [[], [0, 1]]


def test_each_prediction_id_gets_the_target_of_the_row_it_scored():
    batch = pd.DataFrame({"nom": ["a", "b", "c"], "montant": [10, 20, 30]})
    predictions = pd.DataFrame({"prediction_id": ["r-2", "r-0"], "row": [2, 0]})
    labels = labels_file(batch, predictions, "montant")
    assert labels.values.tolist() == [["r-2", 30], ["r-0", 10]]
