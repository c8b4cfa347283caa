"""deepclust plugin ``spice``: SPICE (Niu, Shan, Wang, arXiv 2103.09382; where the paper and the
authors' code differ, the code's settings) in three stages, label-free from end to end: MoCo
features, ten heads trained on prototype pseudo-labels with the lowest-loss head selected, then
FixMatch on the reliable labels."""

from __future__ import annotations

from corekit import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_spice.backbones": ("ClusterResNet", "WideResNet", "clusterresnet34", "wrn28_2",
                                  "wrn28_8", "wrn37_2_stl10"),
    "deepclust_spice.double_softmax": ("DoubleSoftmaxCE", "double_softmax_ce",
                                       "stacked_double_softmax_ce"),
    "deepclust_spice.heads": ("LinearClassifier", "SpiceMultiHead", "StackFlat",
                              "moco_projection"),
    "deepclust_spice.moco": ("MocoInfoNCE", "moco_infonce"),
    "deepclust_spice.prototypes": ("SpicePrototypeLabeler", "default_sizes", "prototype_pairs"),
    "deepclust_spice.reliable": ("SpiceReliableLabeler", "nearest_neighbours",
                                 "reliable_labels"),
    "deepclust_spice.selection": ("SpiceSelection", "selection_scores"),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
