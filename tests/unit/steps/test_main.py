"""main's own parameters: which families it refits as candidates."""

import dataclasses

import pytest

from mlcycle.errors import MlcycleError
from mlcycle.steps.main import MainParams


def test_the_tuned_family_is_not_refitted_and_duplicates_count_once():
    assert MainParams().refits() == ["rf", "hgb"]  # the network is tuned
    assert MainParams(optimize_family="hgb").refits() == ["rf"]
    assert MainParams(optimize_family="hgb", n_trials=0).refits() == ["rf", "hgb"]
    assert MainParams(refit_families=" hgb, hgb ,").refits() == ["hgb"]
    assert MainParams(refit_families="").refits() == []


def test_an_unknown_family_to_refit_is_one_line_naming_the_parameter():
    params = dataclasses.replace(MainParams(), refit_families="rf,xgb")
    with pytest.raises(MlcycleError, match="^parameter refit_families must name families of"):
        params.validate()
