"""The 2-D embedding of the report (UMAP when ``umap`` is importable, else t-SNE), and the
features it refuses to draw.

scikit-learn's Barnes-Hut t-SNE dies natively (SIGSEGV in its quad tree) on coordinates that
are not finite, which is what features without variance (a run that put every image in one
cluster) or NaN become. So the features are checked before any embedding runs (finite, at
least ``MIN_DISTINCT`` distinct points, a variance that is not next to nothing for their size),
and scaled to unit size, so that huge values cannot overflow on the way.
"""

from __future__ import annotations

import importlib.util

import numpy as np

MIN_DISTINCT = 3
"""Fewest distinct points an embedding is drawn for."""
MIN_RELATIVE_VARIANCE = 1e-10
"""Smallest variance of the features, as a share of their mean square, drawn: below it the
points differ by rounding only."""


class Undrawable(ValueError):
    """Features an embedding cannot draw; the message says why."""


def check_drawable(x: np.ndarray) -> np.ndarray:
    """``x`` (N, D) scaled to a mean square of 1; an :class:`Undrawable` when it is not finite,
    holds fewer than ``MIN_DISTINCT`` distinct points or (next to) no variance."""
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        kind = "NaN" if np.isnan(x).any() else "infinite values"
        raise Undrawable(f"the features of {int(bad.sum())} of the {len(x)} images hold {kind} "
                         "(the network's outputs were not finite)")
    distinct = len(np.unique(x, axis=0))
    if distinct < MIN_DISTINCT:
        raise Undrawable(f"the features the clusters are assigned from do not vary: the "
                         f"{len(x)} images have {distinct} distinct point(s), too few to spread "
                         "out in 2-D")
    x = x / (float(np.abs(x).max()) or 1.0)  # at most 1: no square overflows
    square = float(np.mean(x**2))
    if float(x.var(axis=0).sum()) / x.shape[1] < MIN_RELATIVE_VARIANCE * square:
        raise Undrawable(f"the features the clusters are assigned from do not vary: the "
                         f"{len(x)} images differ by rounding only")
    return x / np.sqrt(square)


def embed(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D embedding of ``x`` (N, D) and the method's name: UMAP when ``umap`` is importable,
    else t-SNE; an :class:`Undrawable` (before either runs) for features it cannot draw."""
    from threadpoolctl import threadpool_limits

    x = check_drawable(x)
    # One OpenMP thread: on a busy 2-core machine t-SNE's two threads took 26 s, one 1.3 s.
    with threadpool_limits(1):
        if x.shape[1] > 50 and len(x) > 50:
            from sklearn.decomposition import PCA

            x = PCA(50, random_state=seed).fit_transform(x)
        if importlib.util.find_spec("umap") is not None:
            import umap

            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1),
                                random_state=seed)
            return np.asarray(reducer.fit_transform(x)), "UMAP"
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (len(x) - 1) / 3))
        tsne = TSNE(2, perplexity=perplexity, init="pca" if x.shape[1] >= 2 else "random",
                    max_iter=300, angle=0.8, random_state=seed)
        return tsne.fit_transform(x), "t-SNE"
