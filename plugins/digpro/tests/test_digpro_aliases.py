"""specs/digpro.md §9 C5 and C6: DigPro's prototype aggregation and L_base are ProPos's PSL and
PSA — the same classes under every paper's name, and the same values."""

from __future__ import annotations

import importlib

import pytest
import torch
from deepclust_propos import PSA, PSL
from digpro_fixtures import FixedStep, rows, u

from corekit.testing import plugin_set

ATOL = 1e-5


def available_plugin_modules() -> list:
    """propos, digpro and, where installed, hadis: the plugin modules of the alias check."""
    modules = [importlib.import_module("deepclust_propos.plugin"),
               importlib.import_module("deepclust_digpro.plugin")]
    try:
        modules.append(importlib.import_module("deepclust_hadis.plugin"))
    except ImportError:
        pass
    return modules


PLUGINS = plugin_set(*available_plugin_modules(), name="alias")
HAS_HADIS = PLUGINS.registry.has("loss", "hadis_pcl")
PSL_NAMES = ["propos_psl", "psl", "digpro_prototype_aggregation", "prototype_aggregation",
             pytest.param("hadis_pcl", marks=pytest.mark.skipif(
                 not HAS_HADIS, reason="deepclust-plugin-hadis is not installed"))]
PSA_NAMES = ["propos_psa", "psa", "digpro_base",
             pytest.param("hadis_dsa", marks=pytest.mark.skipif(
                 not HAS_HADIS, reason="deepclust-plugin-hadis is not installed"))]


def c5_step(n: int = 6) -> FixedStep:
    """Online ``q̂`` and target ``k`` of §9 C5 on both views (so both directions agree)."""
    q = rows(u(0), u(10), u(100), u(120), u(200), u(260))[:n]
    k = rows(u(5), u(15), u(95), u(125), u(210), u(250))[:n]
    labels = torch.tensor([0, 0, 1, 1, 2, 2])[:n]
    return FixedStep(online={("proj", 0): q, ("proj", 1): q},
                     target={("proj", 0): k, ("proj", 1): k}, labels=labels)


@pytest.mark.parametrize("name", PSL_NAMES)
def test_c5_prototype_aggregation_is_psl(name: str) -> None:
    assert PLUGINS.registry.get("loss", name).obj is PSL
    loss = PLUGINS.registry.build("loss", name, n_clusters=3)
    assert loss(c5_step()).item() == pytest.approx(0.103462, abs=ATOL)
    # absent cluster: the first four samples only (labels [0, 0, 1, 1]), −10 fill
    assert loss(c5_step(4)).item() == pytest.approx(0.077853, abs=ATOL)


def test_c5_variants_are_not_the_default() -> None:
    loss = PLUGINS.registry.build("loss", "digpro_prototype_aggregation", n_clusters=3)
    teacher = PLUGINS.registry.build("loss", "digpro_prototype_aggregation", n_clusters=3,
                                     negatives="teacher")
    exact = PLUGINS.registry.build("loss", "digpro_prototype_aggregation", n_clusters=3,
                                   absent_logit=float("-inf"))
    assert teacher(c5_step()).item() == pytest.approx(0.106721, abs=ATOL)
    assert abs(loss(c5_step()).item() - teacher(c5_step()).item()) > 1e-3
    assert exact(c5_step(4)).item() == pytest.approx(0.077848, abs=ATOL)


@pytest.mark.parametrize("name", PSA_NAMES)
def test_c6_l_base_is_psa(name: str) -> None:
    assert PLUGINS.registry.get("loss", name).obj is PSA
    k = rows(u(0), u(60), u(90), u(180))
    p = rows(u(20, 2), u(25), u(140, 0.5), u(200))
    step = FixedStep(online={("pred", 0): p, ("pred", 1): p},
                     target={("proj", 0): k, ("proj", 1): k})
    value = PLUGINS.registry.build("loss", name)(step).item()
    assert value == pytest.approx(-1.670662, abs=ATOL)  # code form mean(−2 cos)
    paper = ((torch.nn.functional.normalize(p, dim=1) - k) ** 2).sum(dim=1).mean().item()
    assert paper == pytest.approx(0.329338, abs=ATOL) and paper - value == pytest.approx(2.0)
