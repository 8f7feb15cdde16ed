"""The learned layer weights as a PNG bar chart (matplotlib, Agg back-end)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smx.atomic import atomic_path


def plot_layer_weights(result: dict[str, Any], path: str | Path) -> Path:
    """Bar chart of the mean (± std over seeds) layer weights of every probe, written atomically.

    One panel per probe; bars for each multi-layer upstream (pre-trained, random init), a
    dashed line at the uniform weight ``1 / L``.

    Arguments
    ---------
    result : dict[str, Any]
        The result of :func:`smx.downstream.run.run_probing`.
    path : str | Path
        The PNG to write.

    Returns
    -------
    Path
        ``path``.

    Example
    -------
    >>> import tempfile
    >>> res = {"task": "style", "probes": {"linear": {
    ...     "pretrained": {"layer_weights": {"mean": [0.2, 0.8], "std": [0.0, 0.0]}},
    ...     "fbank": {"layer_weights": {"mean": [1.0], "std": [0.0]}}}}}
    >>> out = plot_layer_weights(res, Path(tempfile.mkdtemp()) / "w.png")
    >>> out.read_bytes()[:4] == b"\\x89PNG"
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probes = result["probes"]
    fig, axes = plt.subplots(
        1, len(probes), figsize=(4.5 * len(probes), 3.2), squeeze=False, sharey=True
    )
    for ax, (name, by_upstream) in zip(axes[0], probes.items(), strict=True):
        _draw_probe(ax, by_upstream)
        ax.set_title(f"{result['task']} / {name}")
    axes[0][0].set_ylabel("softmax weight")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def _draw_probe(ax: Any, by_upstream: dict[str, Any]) -> None:
    """One probe's panel: grouped bars per multi-layer upstream, the uniform weight dashed."""
    shown = {
        k: v["layer_weights"] for k, v in by_upstream.items() if len(v["layer_weights"]["mean"]) > 1
    }
    width = 0.8 / max(len(shown), 1)
    for i, (upstream, weights) in enumerate(shown.items()):
        layers = range(len(weights["mean"]))
        ax.bar(
            [x + (i - (len(shown) - 1) / 2) * width for x in layers],
            weights["mean"],
            width,
            yerr=weights["std"],
            label=upstream,
        )
    if shown:
        count = len(next(iter(shown.values()))["mean"])
        ax.axhline(1 / count, color="grey", linestyle="--", linewidth=1, label="uniform")
        ax.set_xticks(range(count))
        ax.legend(fontsize=8)
    ax.set_xlabel("layer (0 = encoder input)")
