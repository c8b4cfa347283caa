"""The digits results of cc, propos and hadis for seeds 0-2 are those recorded before the run
layer was rebuilt (``tests/data/digits_seeds_before_runner.json``), bit for bit: planning a
stage as a value changed no decision and no random draw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corekit.runner import seeded, train_seeds
from corekit.testing import load_only

RECORD = json.loads((Path(__file__).parents[1] / "data" /
                     "digits_seeds_before_runner.json").read_text())
PLUGINS = {"cc": "cc", "propos": "propos", "hadis": "propos,hadis"}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(RECORD["runs"]))
def test_digits_results_of_seeds_0_to_2_are_the_recorded_ones(method, tmp_path):
    from corekit import recipe as rc

    plugins = load_only(PLUGINS[method])
    recipe = seeded(rc.resolve(method, plugins.find_recipe, "digits"), 0)
    final = train_seeds(recipe, tmp_path, plugins, 3, log=lambda _: None, progress=False)
    found = [{key: run[key] for key in ("nmi", "acc", "ari")} for run in final["runs"]]
    assert found == RECORD["runs"][method]
