"""``smx bench stream``: real-time factor of chunk-by-chunk streaming against the position.

A long utterance is encoded chunk by chunk with the encoder's stateful step API
(:meth:`smx.nn.encoder.Encoder.stream_step`), in eval mode without autograd, with the
chunk size and left context of the config's ``model.streaming`` (``eval_chunk``,
``eval_left``; None = everything streamed so far). SummaryMixing carries running sums, so
its cost per chunk stays flat; MHSA carries a key/value cache, so with an unlimited left
context its cost per chunk grows with the position. The real-time factor of a chunk is its
wall time divided by the audio it covers. Inputs are random front-end outputs (the
streaming API starts after the front-end). Each mixer runs in a fresh process after a
short untimed warm-up stream; peak memory is the resident set above the level before the
timed stream (the growing state included).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smx.bench.common import (
    check_kinds,
    check_seconds,
    check_threads,
    encoder_frames,
    frame_seconds,
    shown_path,
    variant,
)
from smx.config import STREAMABLE_MIXERS, Params

if TYPE_CHECKING:
    from smx.bench.measure import Progress

#: Positions (s) at which the real-time factor is reported: second 10 and minute 5.
REPORT_AT_S = (10.0, 300.0)


@dataclass
class StreamBench:
    """What to stream.

    Arguments
    ---------
    config : Path
        The benchmark config file (its variants give the mixers).
    params : Params
        Its validated content.
    kinds : list of str
        Streamable mixers (``summarymixing``, ``mhsa``).
    seconds : float
        Length of the streamed utterance.
    chunk : int or None
        Frames per chunk; None = ``model.streaming.eval_chunk``.
    left_chunks : int, None or "config"
        Visible previous chunks (None = all); ``"config"`` = ``model.streaming.eval_left``.
    warmup_s : float
        Audio streamed (untimed) before the timed stream, to warm up kernels and caches.
    window_s : float
        The real-time factor at position ``p`` is the median over the chunks ending in
        ``[p - window_s, p]``.
    device : str
        ``cpu`` or ``cuda``.
    threads : int or None
        Intra-op threads of every point's process; None = torch's default (one per core).
    """

    config: Path
    params: Params
    kinds: list[str]
    seconds: float = REPORT_AT_S[-1]
    chunk: int | None = None
    left_chunks: int | str | None = "config"
    warmup_s: float = 5.0
    window_s: float = 5.0
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        self.kinds = check_kinds(self.kinds, STREAMABLE_MIXERS)
        self.seconds, self.warmup_s, self.window_s = check_seconds(
            [self.seconds, self.warmup_s, self.window_s], "seconds, warmup_s and window_s"
        )
        check_threads(self.threads)
        streaming = self.params.model.streaming
        if self.chunk is None:
            self.chunk = streaming.eval_chunk
        if self.left_chunks == "config":
            self.left_chunks = streaming.eval_left
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"chunk: must be an integer >= 1 (frames), got {self.chunk!r}")
        if self.left_chunks is not None and (
            not isinstance(self.left_chunks, int) or self.left_chunks < 0
        ):
            raise ValueError(
                f"left_chunks: must be 'all' or an integer >= 0, got {self.left_chunks!r}"
            )
        for kind in self.kinds:
            variant(self.params, kind, self.config)

    def meta(self) -> dict[str, Any]:
        """JSON-ready description of the run."""
        model = self.params.model
        return {
            "config": shown_path(self.config),
            "kinds": self.kinds,
            "seconds": self.seconds,
            "chunk_frames": self.chunk,
            "chunk_s": self.chunk * frame_seconds(model),
            "left_chunks": self.left_chunks,
            "warmup_s": self.warmup_s,
            "window_s": self.window_s,
            "device": self.device,
            "threads": self.threads,
        }


def rtf_at(chunks: list[dict[str, float]], position_s: float, window_s: float) -> float | None:
    """Median real-time factor of the chunks ending in ``[position_s - window_s, position_s]``.

    None when no chunk ends in that window (the stream is shorter than ``position_s``).

    Example
    -------
    >>> chunks = [{"end_s": 1.0, "rtf": 0.1}, {"end_s": 2.0, "rtf": 0.3}, {"end_s": 3.0, "rtf": 0.2}]
    >>> rtf_at(chunks, 3.0, window_s=1.5)  # the chunks ending at 2 s and 3 s
    0.25
    >>> print(rtf_at(chunks, 10.0, window_s=2.0))
    None
    """
    inside = [c["rtf"] for c in chunks if position_s - window_s <= c["end_s"] <= position_s]
    return statistics.median(inside) if inside else None


def summarize(record: dict[str, Any], window_s: float) -> dict[str, Any]:
    """Add ``rtf_at`` (RTF at each of :data:`REPORT_AT_S`) and ``growth`` (last / first).

    Example
    -------
    >>> rec = {"chunks": [{"end_s": 10.0, "rtf": 0.1}, {"end_s": 300.0, "rtf": 0.15}]}
    >>> out = summarize(rec, window_s=5.0)
    >>> out["rtf_at"], round(out["growth"], 2)
    ({'10': 0.1, '300': 0.15}, 1.5)
    """
    out = dict(record)
    if "chunks" not in record:
        return out
    at = {f"{p:g}": rtf_at(record["chunks"], p, window_s) for p in REPORT_AT_S}
    out["rtf_at"] = at
    first, last = at[f"{REPORT_AT_S[0]:g}"], at[f"{REPORT_AT_S[-1]:g}"]
    if first and last:
        out["growth"] = last / first
    return out


def run(bench: StreamBench, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Stream the utterance once per mixer of ``bench``, each in a fresh process.

    ``progress`` is told of each mixer's record as it is done. Returns one record per
    mixer: ``kind``, ``frames``, every chunk's ``end_s`` and ``rtf``, ``rtf_at`` and
    ``growth`` (:func:`summarize`), or ``error``.
    """
    from smx.bench.measure import run_points

    points = []
    for kind in bench.kinds:
        cfg = variant(bench.params, kind, bench.config)
        spec = {
            "params": cfg.model_dump(mode="json"),
            "seconds": bench.seconds,
            "warmup_s": bench.warmup_s,
            "chunk": bench.chunk,
            "left_chunks": bench.left_chunks,
            "device": bench.device,
        }
        frames = encoder_frames(cfg.model, bench.seconds, cfg.data.sample_rate)
        points.append(({"kind": kind, "frames": frames}, spec))
    records = run_points("smx.bench.stream", points, bench.threads, progress)
    return [summarize(rec, bench.window_s) for rec in records]


def main_point() -> None:
    """One mixer's stream in its own process: spec JSON on stdin, result JSON on stdout."""
    import torch

    from smx.bench.measure import measure
    from smx.nn.build import build_encoder, build_subsampling

    spec = json.loads(sys.stdin.read())
    params = Params.model_validate(spec["params"])
    model = params.model
    torch.manual_seed(params.seed)
    device = torch.device(spec["device"])
    input_dim = build_subsampling(model.frontend).output_dim
    encoder = build_encoder(model, input_dim).to(device).eval()
    sample_rate, chunk, left = params.data.sample_rate, spec["chunk"], spec["left_chunks"]
    frames = encoder_frames(model, spec["seconds"], sample_rate)
    period = frame_seconds(model)
    feats = torch.randn(1, frames, input_dim, device=device)  # [1, T, F]
    mask = torch.ones(1, frames, dtype=torch.bool, device=device)  # [1, T]
    chunks: list[dict[str, float]] = []

    def stream(limit: int, record: bool) -> None:
        state = encoder.init_stream(1, device, feats.dtype, left_chunks=left)
        for start in range(0, limit, chunk):
            stop = min(start + chunk, limit)
            t0 = time.perf_counter()
            _, state = encoder.stream_step(feats[:, start:stop], mask[:, start:stop], state)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if record:
                wall = time.perf_counter() - t0
                chunks.append({"end_s": stop * period, "rtf": wall / ((stop - start) * period)})

    with torch.inference_mode():
        stream(min(frames, max(chunk, round(spec["warmup_s"] / period))), record=False)
        m = measure(lambda: stream(frames, record=True), device, repeats=1, warmup=0)
    total = sum(c["rtf"] for c in chunks) / len(chunks)
    print(
        json.dumps(
            {
                "wall_s": m.median_s,
                "rtf_mean": total,
                "peak_mem_bytes": m.peak_mem_bytes,
                "chunks": chunks,
            }
        )
    )


def plot(records: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    """Real-time factor of every chunk against its end position, one colour per mixer.

    Arguments
    ---------
    records : list of dict
        One record per mixer, as :func:`run` returns them.
    meta : dict
        :meth:`StreamBench.meta` of the run (chunk length, left context, window).
    path : Path
        The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    for rec in records:
        if "chunks" not in rec:
            continue
        xs = [c["end_s"] for c in rec["chunks"]]
        ys = [c["rtf"] for c in rec["chunks"]]
        (line,) = ax.plot(xs, ys, ".", markersize=2, alpha=0.35)
        half = max(1, round(meta["window_s"] / meta["chunk_s"] / 2))
        smooth = [statistics.median(ys[max(0, i - half) : i + half + 1]) for i in range(len(ys))]
        ax.plot(xs, smooth, color=line.get_color(), label=f"{rec['kind']} (running median)")
    for p in REPORT_AT_S:
        ax.axvline(p, color="grey", linestyle=":", linewidth=1)
    left = "all" if meta["left_chunks"] is None else meta["left_chunks"]
    ax.set(
        title=f"streaming: chunks of {meta['chunk_s']:.2f} s, left context {left} chunks",
        xlabel="position in the utterance (s)",
        ylabel="real-time factor per chunk (log)",
        yscale="log",
    )
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main_point()
