"""Named views (``[augment.views.NAME]``, each with its own pipeline type and options): they
build their own pipelines, a step reads them by name (``step.output(name, view="strong")``),
needs name them at compose time, and the numbered form ``augment.views = N`` builds what it
always built."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import pytest
import torch

from corekit import Need, Step, hookimpl
from corekit import recipe as rc
from corekit.builder import build_component
from corekit.cli import main
from corekit.components.augment import Cutout, PaddedCrop, RandomGeometry
from corekit.composer import Composed, CompositionError, compose
from corekit.data.sources import IMAGENET_MEAN
from corekit.engine.trainer import StageTrainer
from corekit.errors import RecipeError
from corekit.runner import DataCache
from corekit.testing import plugin_set, tiny_recipe


@attrs.define
class ViewMean:
    """Mean of head ``head`` on view ``view`` (a name or a position): a loss that reads one
    view by the name its recipe gives."""

    head: str = "proj"
    view: int | str = 0

    def needs(self) -> list[Need]:
        return [Need.output(self.head), Need.views([self.view])]

    def __call__(self, step: Step) -> torch.Tensor:
        return step.output(self.head, self.view).mean()


@hookimpl
def register_losses(register):
    register("view_mean", ViewMean)


PLUGINS = plugin_set(sys.modules[__name__], name="named_views_toy")
NAMED = {"weak": {"type": "weak", "padding": 2},
         "strong": {"type": "strong", "variant": "fixmatch"},
         "plain": {"type": "identity"}}


def named_recipe(views: dict | None = None, **sections) -> dict:
    """The tiny recipe with named ``views`` (``NAMED`` unless given) instead of its numbered
    ones; ``sections`` are merged over it."""
    raw = tiny_recipe()
    raw["augment"] = {"views": NAMED if views is None else views}
    return rc.merge(raw, sections)


def composed(raw: dict) -> Composed:
    stage = rc.validate(raw).stages[0]
    cache = DataCache(torch.device("cpu"))
    return compose(PLUGINS, stage, lambda n: cache(n, stage.data.subset), torch.device("cpu"))


def trainer(raw: dict, run_dir: Path) -> StageTrainer:
    return StageTrainer(composed(raw), run_dir, torch.device("cpu"), None, 0, lambda _: None,
                        progress=False)


def _cutout(pipeline: torch.nn.Module) -> str | None:
    return next((m.mode for m in pipeline.modules() if isinstance(m, Cutout)), None)


def _padding(pipeline: torch.nn.Module) -> int | None:
    return next((m.crop.padding for m in pipeline.modules()
                 if isinstance(m, RandomGeometry) and isinstance(m.crop, PaddedCrop)), None)


def test_each_named_view_builds_its_own_pipeline_with_its_own_options():
    """The issue's case: ``variant = "fixmatch"`` goes to the strong view only (a shared
    ``augment.variant`` fails on ``weak``), ``padding`` to the weak view only."""
    c = composed(named_recipe())
    assert list(c.views) == ["weak", "strong", "plain"]
    assert _cutout(c.views["strong"]) == "fixmatch" and _padding(c.views["weak"]) == 2
    assert _cutout(c.views["weak"]) is None and _padding(c.views["strong"]) == 4
    scan = composed(named_recipe({"a": {"type": "strong", "variant": "scan"},
                                  "b": {"type": "strong", "variant": "fixmatch"}}))
    assert [_cutout(p) for p in scan.views.values()] == ["scan", "fixmatch"]


def test_augment_normalize_applies_to_every_named_view_and_the_eval_transform():
    """spice P12: ImageNet statistics for every view of a stage."""
    c = composed(named_recipe(augment={"normalize": "imagenet"}))
    assert {p.mean for p in c.views.values()} == {c.eval_transform.mean}
    assert c.eval_transform.mean == pytest.approx([sum(IMAGENET_MEAN) / 3])  # one channel


def test_step_output_reads_the_named_views_pipeline(tmp_path):
    """``plain`` is the identity pipeline, so its output is the backbone on the evaluation
    transform; the weak view read first is cached under its own name, not under 'plain'."""
    t = trainer(named_recipe(), tmp_path)
    images = t.composed.train_set.batch(torch.arange(8))
    step = t.make_step(torch.arange(8), t.views(images), 0)
    weak = step.output("backbone", view="weak")
    plain = step.output("backbone", view="plain")
    with torch.no_grad():
        expected = t.composed.model.online.part("backbone")(t.composed.eval_transform(images))
    torch.testing.assert_close(plain, expected)
    assert not torch.allclose(weak, plain)
    assert step.output("backbone", 2) is plain  # a position reads the view at that place


def test_a_misspelt_view_in_a_need_is_refused_at_compose_with_a_suggestion():
    loss = {"losses": {"instance": {"type": "named_views_toy.view_mean", "view": "strnog"}}}
    with pytest.raises(CompositionError) as err:
        composed(named_recipe(**loss))
    assert "augment.views: no view 'strnog'; did you mean 'strong'?" in str(err.value)
    with pytest.raises(CompositionError) as err:
        composed(named_recipe(losses={"instance": {"type": "named_views_toy.view_mean",
                                                   "view": 3}}))
    assert "augment.views: no view 3; it names 3: weak, strong, plain" in str(err.value)
    assert composed(named_recipe(**loss | {"losses": {"instance": {
        "type": "named_views_toy.view_mean", "view": "strong"}}})).losses


def test_the_numbered_form_builds_the_pipelines_it_always_built(tmp_path):
    """``augment.views = N`` names its views 0..N-1 and builds each with the table's type and
    options, drawing the same random numbers in the same order as the factories called
    directly."""
    raw = tiny_recipe(augment={"type": ["simclr", "weak"], "views": 2})
    raw["augment"].pop("crop_scale")
    t = trainer(raw, tmp_path)
    c = t.composed
    assert list(c.views) == [0, 1]
    size, channels = c.train_set.size, c.train_set.channels
    direct = [PLUGINS.registry.build("augmentation", kind, size=size, channels=channels)
              for kind in ("simclr", "weak")]
    images = c.train_set.batch(torch.arange(16))
    torch.manual_seed(3)
    built = t.views(images)
    torch.manual_seed(3)
    expected = [pipeline(images) for pipeline in direct]
    for name, view in built.items():
        torch.testing.assert_close(view, expected[name], rtol=0, atol=0)


@pytest.mark.parametrize("kind, name", [("pseudo_labeler", "confidence_threshold"),
                                        ("loss", "cross_entropy")])
def test_the_core_readers_of_one_view_take_a_view_name(kind, name):
    """Their ``view`` option is typed ``int | str``: a name builds, and their need names it."""
    built = build_component(PLUGINS, kind, name, {"view": "strong"}, f"{kind}.x")
    assert Need.views(["strong"]) in built.needs()


def test_the_named_views_table_is_checked_with_its_key_path():
    def refused(**augment) -> str:
        raw = tiny_recipe()
        raw["augment"] = augment
        with pytest.raises(RecipeError) as err:
            rc.validate(raw)
        return str(err.value)

    views = {"weak": {"type": "weak"}}
    assert refused(views=views, type="simclr").startswith("augment.type: augment.views names")
    assert refused(views=views, variant="fixmatch").startswith("augment.variant:")
    assert refused(views={"1st": {"type": "weak"}}).startswith("augment.views.1st: a view name")
    assert refused(views={}).startswith("augment.views: name 1 to 64 views")
    assert "augment.views.weak: missing required key(s) ['type']" in refused(views={"weak": {}})
    with pytest.raises(RecipeError) as err:
        composed(named_recipe({"strong": {"type": "strong", "varient": "fixmatch"}}))
    assert "augment.views.strong.varient: unknown option" in str(err.value)
    assert "did you mean 'variant'?" in str(err.value)


def test_check_and_show_print_the_named_views(tmp_path, capsys):
    recipe = tmp_path / "named.toml"
    recipe.write_text(rc.to_toml(named_recipe(
        {"weak": {"type": "weak"}, "strong": {"type": "strong", "variant": "fixmatch"}})))
    assert main(["check", str(recipe)]) == 0
    assert "views: weak: weak, strong: strong variant='fixmatch'" in capsys.readouterr().out
    assert main(["show", str(recipe)]) == 0
    assert '[augment.views.strong]\ntype = "strong"\nvariant = "fixmatch"' in \
        capsys.readouterr().out
