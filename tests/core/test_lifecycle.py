"""Core v2 item 3: one declared lifecycle, fired in order, checked when the stage is built."""

import pytest
import torch

from corekit import recipe as rc
from corekit.composer import compose
from corekit.engine.trainer import StageTrainer
from corekit.errors import ComponentError
from corekit.lifecycle import HOOKS, Hooks, Lifecycle, check_hooks
from corekit.runner import DataCache
from corekit.testing import plugin_set, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")


def trained_recorder(tmp_path, **sections):
    raw = tiny_recipe(losses={"instance": {"type": "nt_xent"},
                              "rec": {"type": "toy.hook_recorder", "features": "target:proj"}},
                      model={"target": {"parts": ["proj"], "momentum": 0.5}},
                      train={"epochs": 2, "steps_per_epoch": 2}, **sections)
    stage = rc.validate(raw).stages[0]
    cache = DataCache(torch.device("cpu"))
    c = compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"), None, 2)
    trainer = StageTrainer(c, tmp_path, torch.device("cpu"), None, 0, lambda _: None,
                           progress=False)
    trainer.run()
    return c, next(w.fn for w in c.losses if w.name == "rec")


def test_hooks_fire_in_the_declared_order(tmp_path):
    _, recorder = trained_recorder(tmp_path)
    step = ["on_step_start", "loss", "before_backward", "after_optimizer_step"]
    expected = [("on_stage_start", 0, 0)]
    for epoch in range(2):
        expected.append(("on_epoch_start", epoch, 2 * epoch))
        for n in (2 * epoch + 1, 2 * epoch + 2):
            expected += [(hook, epoch, n) for hook in step]
        expected.append(("on_epoch_end", epoch, 2 * epoch + 2))
    expected.append(("on_stage_end", 1, 4))
    assert recorder.calls == expected
    assert recorder.extracted == [(256, 16), (256, 16)]  # target:proj of the whole set
    saved = tmp_path / "stages" / "main" / "hook_calls.txt"  # a component's own stage output
    assert saved.read_text() == f"{len(expected)}\n"


def test_target_ema_moves_after_the_optimizer_step(tmp_path):
    c, _ = trained_recorder(tmp_path)
    online = c.model.online.part("proj").state_dict()
    target = c.model.target.network.part("proj").state_dict()
    moved = [k for k in target if not torch.equal(online[k], target[k])]
    assert moved  # m = 0.5: the target trails the online network but is not a copy of it


class Misspelt:
    def needs(self):
        return []

    def on_epoch_begin(self, ctx):  # not a hook: would never fire
        pass


class WrongArity:
    def on_step_start(self):
        pass


def test_misspelt_or_malformed_hooks_fail_when_built():
    with pytest.raises(ComponentError, match="'on_epoch_begin' is not a lifecycle hook.*"
                                             "did you mean .*'on_epoch_start'"):
        check_hooks(Misspelt(), "losses.x")
    with pytest.raises(ComponentError, match=r"on_step_start\(\) must take exactly one "
                                             "argument \\(the Step\\)"):
        Hooks().add("losses.y", WrongArity())


def test_protocol_lists_every_hook_once():
    declared = [name for name in vars(Lifecycle) if name in HOOKS]
    assert sorted(declared) == sorted(HOOKS) and len(set(HOOKS)) == 7
    recorder = toy_plugin.HookRecorder()
    assert isinstance(recorder, Lifecycle)
    hooks = Hooks()
    hooks.add("a", recorder)
    hooks.add("b", recorder)  # one component registered twice fires once
    assert len(hooks.of("on_step_start")) == 1
    with pytest.raises(KeyError, match="did you mean .*'on_step_start'"):
        hooks.of("on_step_begin")
