"""The step races of issue #34 (``bench/cc_step.py``, ``bench/hadis_step.py``) time the same
work on both sides: the authors' step, written out in plain PyTorch, and ours in fp32 give the
same loss on the first batch (same views, same initial weights' statistics), so a speed-up
they report is one of the settings, not of a different computation."""

import argparse

import pytest

from bench import cc_step, hadis_step


def tiny(settings: list[str]) -> argparse.Namespace:
    return argparse.Namespace(images=8, batch=4, warmup=1, rounds=1, settings=settings)


@pytest.mark.parametrize("bench", [cc_step, hadis_step], ids=["cc", "hadis"])
def test_the_authors_step_and_ours_in_fp32_give_the_same_first_loss(bench):
    result = bench.run(tiny(["fp32"]))
    (ours,) = result["rows"]
    assert ours["setting"] == "fp32"
    assert ours["first_loss"] == pytest.approx(result["authors"]["first_loss"], rel=1e-3)
    assert len(result["seconds"]["authors"]) == len(result["seconds"]["fp32"]) == 1
