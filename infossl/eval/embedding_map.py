"""Pictures of the validation embeddings, where people look rather than read.

A 2-D map of the backbone features coloured by label: PCA (scikit-learn) always, UMAP when
``umap-learn`` is installed (``pip install infossl[umap]``). Each map is a PNG beside the
evaluation JSON and a figure in the run's TensorBoard; the same points go to TensorBoard's
embedding projector (``add_embedding``, one label per point) for interactive t-SNE/UMAP/PCA.
Features are L2-normalised first: the kNN protocol compares them by cosine, so that is the
geometry the map should show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["embedding_maps", "pca_2d", "umap_2d"]


def pca_2d(features: np.ndarray) -> np.ndarray:
    """The first two principal components of ``features``.

    Args:
        features: (n, d) array.

    Returns:
        (n, 2) array: the centred features projected on the two leading right singular vectors.
    """
    from sklearn.decomposition import PCA

    return PCA(n_components=2, svd_solver="full").fit_transform(features)


def umap_2d(features: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """A 2-D UMAP of ``features`` (McInnes et al. 2018, lmcinnes/umap), or None when
    ``umap-learn`` is not installed.

    Args:
        features: (n, d) array.
        seed: UMAP's random_state.

    Returns:
        (n, 2) array, or None.
    """
    try:
        import umap
    except ImportError:
        return None
    neighbours = min(15, len(features) - 1)
    return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed).fit_transform(
        features
    )


def _figure(coords: np.ndarray, labels: np.ndarray, title: str):
    import matplotlib

    matplotlib.use("Agg")  # no display needed (CI, clusters)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        chosen = labels == c
        ax.scatter(*coords[chosen].T, s=6, color=cmap(i % cmap.N), label=str(c))
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize="small", title="label", loc="best")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def embedding_maps(
    features: torch.Tensor,
    labels: torch.Tensor,
    out_dir: Path,
    stem: str,
    log_dir: Path | None = None,
    step: int = 0,
    max_points: int = 2000,
    seed: int = 0,
) -> dict[str, str]:
    """Write the 2-D maps of ``features`` coloured by ``labels`` and the projector data.

    Args:
        features: (n, d) validation features.
        labels: (n,) integer labels.
        out_dir: folder of the PNGs (``<stem>_embedding_<pca|umap>.png``).
        stem: file-name and tag prefix, e.g. ``digits_linear``.
        log_dir: a TensorBoard run directory; when given, the maps are logged as figures
            (``eval/<stem>/embedding_<pca|umap>``) and the points go to the embedding projector
            (tag ``<stem>_val_features``) at ``step``.
        step: TensorBoard step (the pretraining step of the checkpoint).
        max_points: at most this many points, a seeded random subset (the projector keeps every
            point as text: 10,000 x 512 floats would be ~50 MB).
        seed: seed of the subset and of UMAP.

    Returns:
        {"pca": path, "umap": path (when umap-learn is installed), "projector_points": n}.
    """
    n = len(features)
    if n > max_points:
        chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points]
        chosen = chosen.sort().values
        features, labels = features[chosen], labels[chosen]
    points = F.normalize(features.float(), dim=1)
    x, y = points.numpy(), labels.numpy()
    maps = {"pca": pca_2d(x)}
    umap_coords = umap_2d(x, seed)
    if umap_coords is not None:
        maps["umap"] = umap_coords

    out_dir.mkdir(parents=True, exist_ok=True)
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    written: dict = {}
    for name, coords in maps.items():
        fig = _figure(coords, y, f"{stem}: {name.upper()} of {len(y)} validation features")
        path = out_dir / f"{stem}_embedding_{name}.png"
        fig.savefig(path, dpi=120)
        written[name] = str(path)
        if writer is not None:
            writer.add_figure(f"eval/{stem}/embedding_{name}", fig, step)  # closes the figure
        else:
            import matplotlib.pyplot as plt

            plt.close(fig)
    if writer is not None:
        writer.add_embedding(
            points, metadata=y.tolist(), tag=f"{stem}_val_features", global_step=step
        )
        writer.close()
        written["projector_points"] = len(y)
    return written
