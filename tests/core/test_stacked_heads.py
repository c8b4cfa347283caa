"""Issue 30 item 5: a head of H stacked heads (``stacked_cluster_head``, output (B, H, K)) is read
only by readers that accept a stack; a ``selection`` state keeps, without labels, the best of its
heads with a snapshot of it; ``eval.assign = "head:PART@STATE"`` assigns with that snapshot and
the stage's ``outputs.pt`` holds it (SPICE's choice of the lowest-loss head, spice.md §3.3)."""

from __future__ import annotations

import sys
from typing import ClassVar

import attrs
import pytest
import torch

from corekit import Need, Step, hookimpl
from corekit import recipe as rc
from corekit.assign import head_assignment
from corekit.cli import main
from corekit.components.heads import ClusterHead, StackedClusterHead
from corekit.composer import Composed, CompositionError, compose
from corekit.engine.trainer import StageTrainer
from corekit.errors import RecipeError
from corekit.handoff import StageOutputs
from corekit.lifecycle import StageContext
from corekit.predict import load_trained, predict
from corekit.runner import DataCache
from corekit.state import Selection
from corekit.testing import plugin_set, run_tiny, tiny_recipe

K = 10
HEADS = {"heads": {"type": "stacked_cluster_head", "input": "backbone", "stack": 3, "hidden": 16}}


@attrs.define
class StackSquare:
    """Mean square of every head's probabilities: a loss that accepts a stack. With
    ``selected``, it also reads the head that state keeps (as the branch of that name)."""

    head: str = "heads"
    selected: str | None = None

    def needs(self) -> list[Need]:
        kept = [Need.output(self.head, self.selected, "probs")] if self.selected else []
        return [Need.output(self.head, reads="probs", stack=True), *kept]

    def __call__(self, step: Step) -> torch.Tensor:
        loss = step.output(self.head, 0).pow(2).mean()
        if self.selected:
            loss = loss + 0 * step.output(self.head, 0, self.selected).mean()
        return loss


class ScriptedSelection(Selection):
    """Scores the heads as ``SCRIPT[epoch]`` says and keeps the online network of each epoch."""

    SCRIPT: ClassVar[list[list[float]]] = [[1.0, 0.0, 2.0], [1.0, 0.5, 2.0]]
    SEEN: ClassVar[dict[int, dict[str, torch.Tensor]]] = {}

    def scores(self, ctx: StageContext) -> torch.Tensor:
        self.SEEN[ctx.epoch] = {k: v.clone() for k, v in ctx.model.online.state_dict().items()}
        return torch.tensor(self.SCRIPT[ctx.epoch])


@hookimpl
def register_losses(register):
    register("stack_square", StackSquare)


@hookimpl
def register_state_types(register):
    register("scripted_selection", ScriptedSelection)


PLUGINS = plugin_set(sys.modules[__name__], name="stacked_heads_toy")


def stacked_recipe(selection: str = "selection", **sections) -> dict:
    """The tiny recipe with three stacked heads trained by ``stack_square``, a selection state
    ``best`` and evaluation by the head it keeps; ``sections`` are merged over it."""
    raw = tiny_recipe()
    del raw["clusterer"]
    raw["model"]["heads"] = HEADS
    raw["losses"] = {"square": {"type": "stack_square"}}
    raw["state"] = {"best": {"type": selection, "part": "heads"}}
    raw["eval"] = {"assign": "head:heads@best"}
    return rc.merge(raw, sections)


def composed(raw: dict) -> Composed:
    stage = rc.validate(raw).stages[0]
    cache = DataCache(torch.device("cpu"))
    return compose(PLUGINS, stage, lambda n: cache(n, stage.data.subset), torch.device("cpu"))


def test_a_stack_is_its_heads_side_by_side():
    torch.manual_seed(0)
    stack = StackedClusterHead(8, K, stack=3, hidden=16)
    x = torch.randn(5, 8)
    out = stack(x)
    assert out.shape == (5, 3, K) and stack.stack == 3 and stack.produces == "probs"
    single = stack.select(2)
    assert type(single) is ClusterHead and torch.equal(single(x), out[:, 2])
    torch.manual_seed(0)
    assert torch.equal(ClusterHead(8, K, hidden=16)(x), out[:, 0])  # built as a ClusterHead is


def test_the_argmax_of_a_stack_is_over_the_clusters():
    scores = torch.zeros(4, 3, K)
    scores[:, 0, 7] = 1.0  # head 0 puts every image in cluster 7
    scores[:, 2, 2] = 1.0
    labels, confidence = head_assignment(scores, "probs")
    assert labels.shape == confidence.shape == (4, 3)
    assert labels[:, 0].tolist() == [7] * 4 and labels[:, 2].tolist() == [2] * 4
    logits, _ = head_assignment(scores * 5, "logits")
    assert torch.equal(logits, labels)


def test_a_loss_without_stack_support_is_refused_at_compose():
    composed(stacked_recipe())  # a loss that accepts a stack composes
    raw = stacked_recipe(losses={"square": {"type": "batch_marginal_entropy", "head": "heads"}})
    with pytest.raises(CompositionError) as err:
        composed(raw)
    assert "reads online:heads as one output (B, K), but part 'heads'" in str(err.value)
    assert "stacks 3 heads, (B, 3, K)" in str(err.value)
    with pytest.raises(CompositionError, match="eval.assign reads online:heads as one output"):
        composed(stacked_recipe(eval={"assign": "head:heads"}))


def test_the_head_made_best_is_selected_and_evaluated(tmp_path):
    """Head 0 is uniform and head 2 collapsed (no information about the image); head 1's
    confident, varied predictions win, and the evaluation assigns with it."""
    trainer = StageTrainer(composed(stacked_recipe()), tmp_path, torch.device("cpu"), None, 0,
                           lambda _: None, progress=False)
    heads = trainer.composed.model.online.part("heads").heads
    features = trainer.ctx.features("backbone")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for head in (heads[0], heads[2]):
            for p in head.parameters():
                p.zero_()
        heads[2].mlp[2].bias[3] = 10.0
        spread = torch.randn(16, 32, generator=generator) / (features.std(0) + 1e-6)
        heads[1].mlp[0].weight.copy_(spread)
        heads[1].mlp[0].bias.copy_(-spread @ features.mean(0))
        heads[1].mlp[2].weight.copy_(torch.randn(K, 16, generator=generator))
    outputs = trainer.ctx.features("heads")
    assert outputs.shape == (len(trainer.composed.train_set), 3, K)
    trainer.hooks.fire("on_epoch_end", trainer.context(0))
    best = trainer.composed.state["best"]
    assert (int(best.index), int(best.epoch)) == (1, 0) and float(best.score) < -0.5
    expected = head_assignment(outputs[:, 1], "probs")
    assigned = trainer.assigned()
    assert torch.equal(assigned[0], expected[0]) and torch.allclose(assigned[1], expected[1])
    assert assigned[0].unique().numel() > 1
    assert set(trainer.evaluate()) >= {"nmi", "acc", "ari"}


def test_outputs_hold_the_snapshot_not_the_last_epoch(tmp_path):
    """The scripted scores make epoch 0's head 1 the best; epoch 1 trains on, is worse, and
    reads the snapshot in train mode, which leaves it (its BatchNorm statistics too) as it was.
    """
    ScriptedSelection.SEEN.clear()
    raw = stacked_recipe("scripted_selection", train={"epochs": 2},
                         losses={"square": {"selected": "best"}})
    run_tiny(raw, tmp_path, PLUGINS)
    outputs = StageOutputs.load(tmp_path / "stages" / "main")
    kept = outputs.state["best"]
    assert (int(kept["index"]), int(kept["epoch"]), float(kept["score"])) == (1, 0, 0.0)
    online = {"network.heads.heads.": "heads.heads.heads.1.",
              "network.encoders.backbone.": "encoders.backbone."}
    snapshot = {next(o + k.removeprefix(s) for s, o in online.items() if k.startswith(s)): v
                for k, v in kept.items() if k.startswith("network.")}
    assert len(snapshot) == len(kept) - 3 and snapshot.keys() < ScriptedSelection.SEEN[0].keys()
    for key, value in snapshot.items():
        assert torch.equal(value, ScriptedSelection.SEEN[0][key]), key
    last_epoch = outputs.parts["heads"]["heads.1.mlp.0.weight"]
    assert not torch.equal(kept["network.heads.heads.mlp.0.weight"], last_epoch)
    model = load_trained(tmp_path, PLUGINS)
    assert model.branch == "best" and model.part == "heads"
    data = DataCache(torch.device("cpu"))("digits", 256)
    written = [int(line.split(",")[2]) for line in
               (tmp_path / "assignments.csv").read_text().splitlines()[1:]]
    assert predict(model, data)[0].tolist() == written


def test_a_stage_of_no_epoch_selects_at_its_end(tmp_path):
    raw = stacked_recipe(train={"epochs": 0})
    del raw["losses"]
    run_tiny(raw, tmp_path, PLUGINS)
    assert int(StageOutputs.load(tmp_path / "stages" / "main").state["best"]["index"]) >= 0


@pytest.mark.parametrize(("assign", "state", "expected"), [
    ("head:heads@bset", {}, "reads the head that 'bset' selects, but 'bset' is no state of "
                            "this stage; name a state that selects one (did you mean 'best'?)"),
    ("head:heads@bank", {"bank": {"type": "memory_bank", "source": "online:backbone"}},
     "reads the head that 'bank' selects, but 'bank' is a 'memory_bank' state, which selects "
     "no head; name a state that selects one (valid names: best)"),
    ("head:proj@best", {}, "reads proj@best, but state 'best' selects among the heads of "
                           "'heads': read 'heads@best'"),
])
def test_eval_assign_naming_no_selection_is_exit_2(tmp_path, capsys, assign, state, expected):
    """Only core components (nt_xent trains; the stack is read by the selection alone), so the
    command line's own plugins compose it."""
    raw = tiny_recipe(model={"heads": HEADS}, eval={"assign": assign},
                      state={"best": {"type": "selection", "part": "heads"}, **state})
    path = tmp_path / "recipe.toml"
    path.write_text(rc.to_toml(raw))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"eval.assign {expected}" in err and "Traceback" not in err


def test_eval_assign_of_a_selection_composes_from_the_command_line(tmp_path):
    raw = tiny_recipe(model={"heads": HEADS}, eval={"assign": "head:heads@best"},
                      state={"best": {"type": "selection", "part": "heads"}})
    path = tmp_path / "recipe.toml"
    path.write_text(rc.to_toml(raw))
    assert main(["check", str(path)]) == 0


@pytest.mark.parametrize(("part", "expected"), [
    ("one", "part 'one' (head 'one', core.cluster_head) is one head"),
    ("haeds", "part 'haeds' is not a part of the model; did you mean 'heads'?"),
])
def test_a_selection_reads_a_stacked_part(part, expected):
    one = {"one": {"type": "cluster_head", "input": "backbone"}}
    with pytest.raises(RecipeError, match=r"state\.best: cannot build state 'selection'") as err:
        composed(stacked_recipe(model={"heads": one}, state={"best": {"part": part}}))
    assert expected in str(err.value)


def test_eval_assign_grammar():
    with pytest.raises(RecipeError, match="must be 'head:<name>@<state>'"):
        composed(stacked_recipe(eval={"assign": "head:target:heads@best"}))
