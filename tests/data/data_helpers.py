"""Helpers of the data tests: a tiny data config and audio files with known content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from smx.config import DataCfg


def tiny_data_cfg(top: dict[str, Any] | None = None, **synth: Any) -> DataCfg:
    """A data config for a corpus of about a minute and a half, 6 speakers (2 held out).

    ``top`` overrides fields of the data section, ``synth`` fields of data.synth.
    """
    settings = {
        "hours": 0.025,
        "num_speakers": 6,
        "heldout_speakers": 2,
        "free_sentences": 50,
        "workers": 2,
        **synth,
    }
    return DataCfg.model_validate(
        {
            "min_duration": 0.5,
            "max_duration": 10.0,
            "max_batch_duration": 12.0,
            "num_buckets": 3,
            "synth": settings,
            **(top or {}),
        }
    )


def tone(seconds: float, rate: int = 16000, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    """A sine tone ``[S]`` (or ``[S, C]``) at 0.3 of full scale."""
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


def write_audio(path: Path, samples: np.ndarray, rate: int = 16000, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, **kwargs)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
