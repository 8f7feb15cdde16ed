"""A pre-trained encoder as a self-contained MLflow model: audio in, hidden states out.

Pre-training logs each encoder as an MLflow ``python_function`` model whose loader module is
this file (no pickled Python object anywhere). The model folder holds:

    data/encoder/encoder.pt   the weights as a state dict with the config that built them
                              (the ``models/<variant>/encoder.pt`` format, read with
                              ``weights_only=True``)
    data/encoder/smx.json     model format, smx version, config hash, source hash, commit
    code/smx/                 the smx source that reads it (MLflow ``code_paths``)

``mlflow.pyfunc.load_model(uri)`` calls :func:`_load_pyfunc`; ``predict`` takes a batch of
16 kHz float32 waveforms padded to one length with their lengths in samples,
``{"audio": [B, S], "lengths": [B]}`` (:func:`batch_audio` builds it from a list), and
returns the hidden states of one layer, ``[B, T, D]`` float32, zero on padded frames. The
parameter ``layer`` picks it: -1 (default) the last block's output after the final
LayerNorm, 0 the encoder input, ``l`` the output of block ``l``. ``smx probe --encoder
models:/...`` reads the same folder without the pyfunc wrapper (:func:`read_model_folder`).

Example
-------
>>> import numpy as np
>>> batch = batch_audio([np.zeros(1600, np.float32), np.zeros(800, np.float32)])
>>> batch["audio"].shape, batch["lengths"].tolist()
((2, 1600), [1600, 800])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smx import __version__

#: the layout of the model folder this smx writes and reads
MODEL_FORMAT = 1
ENCODER_FILE = "encoder.pt"
INFO_FILE = "smx.json"
#: the third-party packages that loading and running the model imports
REQUIREMENTS = ("torch", "torchaudio", "numpy", "pydantic", "ruamel.yaml")


class ModelFolderError(ValueError):
    """A model folder is not one this smx can read; one sentence says why."""


def batch_audio(waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The model input for a list of 1-D waveforms: zero-padded ``audio`` and ``lengths``."""
    lengths = np.array([len(w) for w in waveforms], dtype=np.int64)
    audio = np.zeros((len(waveforms), int(lengths.max(initial=0))), dtype=np.float32)
    for row, wave in enumerate(waveforms):
        audio[row, : len(wave)] = wave
    return {"audio": audio, "lengths": lengths}


def write_model_folder(folder: Path, encoder_file: Path, info: dict[str, str]) -> Path:
    """Write a model's data folder: a copy of ``encoder_file`` and ``smx.json`` in ``folder``.

    Arguments
    ---------
    folder : Path
        An empty or missing folder (MLflow's ``data_path``).
    encoder_file : Path
        The ``encoder.pt`` written by pre-training.
    info : dict[str, str]
        Provenance recorded beside it (config hash, source hash, commit, variant).

    Returns
    -------
    Path
        ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ENCODER_FILE).write_bytes(Path(encoder_file).read_bytes())
    record = {"format": MODEL_FORMAT, "smx_version": __version__, **info}
    (folder / INFO_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return folder


def data_folder(folder: Path, source: str) -> Path:
    """The data folder of a downloaded model: from its ``MLmodel`` when it has one.

    Raises
    ------
    ModelFolderError
        The model is not a ``python_function`` model of this module.
    """
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        return folder  # a data folder itself (what _load_pyfunc receives)
    from ruamel.yaml import YAML

    flavor = (YAML(typ="safe").load(mlmodel.read_text()) or {}).get("flavors", {})
    pyfunc = flavor.get("python_function", {})
    if pyfunc.get("loader_module") != __name__ or "data" not in pyfunc:
        raise ModelFolderError(
            f"{source} is not an smx encoder model (its MLmodel names loader module "
            f"{pyfunc.get('loader_module')!r}, not {__name__!r}); log encoders with smx pretrain"
        )
    return folder / pyfunc["data"]


def read_model_folder(folder: Path, source: str) -> tuple[Path, dict[str, Any]]:
    """The ``encoder.pt`` of a downloaded model (or its data folder) and its ``smx.json``.

    Arguments
    ---------
    folder : Path
        The model folder (with ``MLmodel``) or its data folder.
    source : str
        The model URI, named in messages.

    Raises
    ------
    ModelFolderError
        Not an smx encoder model, or one of another model format.
    """
    folder = data_folder(folder, source)
    info_path = folder / INFO_FILE
    if not info_path.is_file() or not (folder / ENCODER_FILE).is_file():
        raise ModelFolderError(
            f"{source} is not an smx encoder model (no {INFO_FILE} and {ENCODER_FILE} in its "
            "data folder); log encoders with smx pretrain"
        )
    info = json.loads(info_path.read_text())
    if info.get("format") != MODEL_FORMAT:
        raise ModelFolderError(
            f"{source} was logged by smx {info.get('smx_version', '?')} in model format "
            f"{info.get('format')}; this smx ({__version__}) reads format {MODEL_FORMAT}"
        )
    return folder / ENCODER_FILE, info


def pinned_requirements() -> list[str]:
    """:data:`REQUIREMENTS` pinned to the installed versions (local tags such as +cu130 cut).

    Example
    -------
    >>> pinned_requirements()[0].startswith("torch==")
    True
    """
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in REQUIREMENTS]


def bundle_code(folder: Path) -> Path:
    """A copy of the imported ``smx`` package's Python files as ``folder/smx``; that folder.

    MLflow bundles it with the model (``code_paths``) and puts ``folder`` first on
    ``sys.path`` when loading, so the model runs the code that wrote it.
    """
    from smx.provenance import package_dir

    package = package_dir()
    target = folder / "smx"
    for path in sorted(package.rglob("*.py")):
        copy = target / path.relative_to(package)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
    return target


class EncoderModel:
    """The pyfunc implementation: a frozen encoder and its ``predict``.

    Arguments
    ---------
    upstream : smx.downstream.upstream.EncoderUpstream
        The frozen front-end and encoder.
    info : dict[str, Any]
        The model's ``smx.json``.
    """

    def __init__(self, upstream: Any, info: dict[str, Any]) -> None:
        self.upstream, self.info = upstream, info

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """Hidden states ``[B, T, D]`` of layer ``params["layer"]`` (default -1, the last)."""
        audio = torch.as_tensor(np.asarray(model_input["audio"], dtype=np.float32))  # [B, S]
        lengths = torch.as_tensor(np.asarray(model_input["lengths"], dtype=np.int64))  # [B]
        if audio.dim() != 2 or lengths.shape != audio.shape[:1]:
            raise ValueError(
                f"audio must be [batch, samples] with one length per row, got audio "
                f"{list(audio.shape)} and lengths {list(lengths.shape)}"
            )
        layer = int((params or {}).get("layer", -1))
        num_layers = self.upstream.num_layers
        if not -num_layers <= layer < num_layers:
            raise ValueError(f"layer {layer} is out of range for {num_layers} layers")
        states, _ = self.upstream(audio, lengths)  # [B, T, L, D]
        return states[:, :, layer].contiguous().numpy()  # [B, T, D]


def _load_pyfunc(data_path: str) -> EncoderModel:
    """MLflow's entry point: the model of a ``data`` folder (weights-only load)."""
    from smx.downstream.upstream import load_checkpoint_upstream

    path, info = read_model_folder(Path(data_path), data_path)
    return EncoderModel(load_checkpoint_upstream(path), info)
