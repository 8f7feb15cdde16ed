"""Frozen upstream models: a pre-trained encoder, its random-init twin, plain fbank features.

An upstream maps waveforms to the hidden states of every layer, stacked as
``[B, T, L, D]``. For an encoder, ``L = num_layers + 1``: layer 0 is the encoder input (the
front-end output after the input projection and positions, as MP3S' layer 0), then each
block's output, the last one after the final LayerNorm (:class:`smx.nn.encoder.Encoder`).
The fbank baseline has one layer, the normalised log-mel features.

Every upstream is frozen: parameters do not require gradients, the forward pass runs under
``torch.inference_mode()`` (no autograd state), and the module stays in eval mode (no
dropout, no layerdrop) even when ``train()`` is called on it.

Sources (:func:`load_upstream`):

- ``models/<variant>/encoder.pt`` written by pre-training: ``{"format": 1, "step",
  "config_hash", "params" (JSON), "state_dict"}`` with the objective's ``fbank.``,
  ``extractor.``/``subsampling.`` and ``encoder.`` entries, read with
  ``torch.load(weights_only=True)``;
- an MLflow model URI (``models:/<name>@latest``, ``runs:/...``) of the model logged by
  pre-training (:mod:`smx.serving`): its ``encoder.pt``, read the same way.

Example
-------
>>> from smx.config import Params
>>> params = Params.model_validate({"model": {
...     "frontend": {"cnn_channels": [16, 16]},
...     "encoder": {"num_layers": 2, "d_model": 16, "d_ffn": 32, "kernel_size": 3},
...     "mixer": {"kind": "mhsa", "heads": 2}}})
>>> up = random_upstream(params, seed=0)
>>> states, lengths = up(torch.randn(2, 16000), torch.tensor([16000, 8000]))
>>> states.shape, lengths.tolist(), up.num_layers, up.dim
(torch.Size([2, 48, 3, 16]), [48, 23], 3, 16)
>>> fbank_upstream(params)(torch.randn(1, 1600), torch.tensor([1600]))[0].shape
torch.Size([1, 11, 1, 80])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from smx.config import Params
from smx.downstream.errors import ProbeError
from smx.nn.build import build_encoder, build_fbank, build_subsampling

#: state-dict prefixes of the front-end network in an SSL objective -> ours
FRONTEND_PREFIXES = ("extractor.", "subsampling.")
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


class Upstream(nn.Module):
    """Base of frozen upstreams: ``(audio [B, S], audio_lens [B]) -> ([B, T, L, D], [B])``.

    Attributes
    ----------
    num_layers : int
        ``L``, the hidden states returned per frame.
    dim : int
        ``D``, the size of each hidden state.
    frame_shift : float
        Seconds between output frames.
    spec : str
        What, besides the weights, fixes the function (the config it was built from, as
        JSON); set by the builders below, empty for a hand-made upstream. The hidden-state
        cache keys on it (:mod:`smx.downstream.state_cache`) and skips an upstream without.
    """

    num_layers: int
    dim: int
    frame_shift: float
    spec: str = ""

    def freeze(self) -> Upstream:
        """No gradients, eval mode; returns self."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Upstream:
        """Stay in eval mode: a frozen upstream never uses dropout or layerdrop."""
        return super().train(False)


class EncoderUpstream(Upstream):
    """A front-end + encoder returning every layer's hidden state (frozen).

    The module docstring has an example.

    Arguments
    ---------
    fbank : smx.nn.frontend.FbankFrontend
        Waveforms -> log-mel frames.
    frontend : nn.Module
        Log-mel frames -> encoder input (CNN latent extractor or Conv2d subsampling).
    encoder : smx.nn.encoder.Encoder
        The context encoder.
    frame_shift : float
        Seconds between encoder frames.
    """

    def __init__(
        self, fbank: nn.Module, frontend: nn.Module, encoder: nn.Module, frame_shift: float
    ) -> None:
        super().__init__()
        self.fbank, self.frontend, self.encoder = fbank, frontend, encoder
        self.num_layers = len(encoder.blocks) + 1
        self.dim = int(encoder.d_model)
        self.frame_shift = frame_shift
        self.freeze()

    def forward(
        self, audio: torch.Tensor, audio_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states ``[B, T, L, D]`` (zero on padded frames) and frames ``[B]``."""
        with torch.inference_mode():
            feats, frames = self.fbank(audio, audio_lens)  # [B, T_f, F]
            latents, lengths = self.frontend(feats, frames)  # [B, T, C]
            out = self.encoder(latents, lengths)
            return torch.stack(out.hidden_states, dim=2), out.lengths  # [B, T, L, D]


class FbankUpstream(Upstream):
    """The plain-features baseline: normalised log-mel frames as a single layer.

    The module docstring has an example.

    Arguments
    ---------
    fbank : smx.nn.frontend.FbankFrontend
        Waveforms -> normalised log-mel frames.
    frame_shift : float
        Seconds between log-mel frames.
    """

    def __init__(self, fbank: nn.Module, frame_shift: float) -> None:
        super().__init__()
        self.fbank = fbank
        self.num_layers = 1
        self.dim = int(fbank.output_dim)
        self.frame_shift = frame_shift
        self.freeze()

    def forward(
        self, audio: torch.Tensor, audio_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel features ``[B, T, 1, n_mels]`` and frames ``[B]``."""
        with torch.inference_mode():
            feats, frames = self.fbank(audio, audio_lens)  # [B, T, F]
            return feats[:, :, None, :], frames


def build_parts(params: Params) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Fresh ``(fbank, frontend, encoder)`` of ``params`` as the SSL objective builds them.

    The encoder has a mask embedding for wav2vec 2.0, as in pre-training, so that the
    pre-trained state dict loads strictly (the embedding is unused when probing).

    Returns
    -------
    tuple[nn.Module, nn.Module, nn.Module]
        The log-mel features, the subsampling front-end and the encoder, random weights
        drawn from the global torch RNG.
    """
    fe = params.model.frontend
    fbank = build_fbank(fe, params.data.sample_rate)
    frontend = build_subsampling(fe, params.model.encoder.dropout)
    encoder = build_encoder(
        params.model, frontend.output_dim, mask_embedding=params.ssl.kind == "wav2vec2"
    )
    return fbank, frontend, encoder


def encoder_spec(params: Params) -> str:
    """The :attr:`Upstream.spec` of an encoder built from ``params``."""
    model = params.model.model_dump(mode="json")
    return json.dumps({"model": model, "sample_rate": params.data.sample_rate}, sort_keys=True)


def random_upstream(params: Params, seed: int) -> EncoderUpstream:
    """The baseline: the architecture of ``params`` with random weights drawn with ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fbank, frontend, encoder = build_parts(params)
    upstream = EncoderUpstream(fbank, frontend, encoder, params.model.frontend.frame_seconds)
    upstream.spec = encoder_spec(params)
    return upstream


def fbank_upstream(params: Params) -> FbankUpstream:
    """The baseline of plain log-mel features (the front-end config's fbank)."""
    fe = params.model.frontend
    upstream = FbankUpstream(build_fbank(fe, params.data.sample_rate), fe.hop_ms / 1000)
    frontend = fe.model_dump(mode="json")
    upstream.spec = json.dumps({"frontend": frontend, "sample_rate": params.data.sample_rate})
    return upstream


def _our_key(key: str) -> str:
    """A state-dict key of the SSL objective renamed to the upstream's (``frontend.``)."""
    for prefix in FRONTEND_PREFIXES:
        if key.startswith(prefix):
            return "frontend." + key[len(prefix) :]
    return key


def _shape_of(value: Any) -> tuple[int, ...]:
    """The shape of a tensor; ``()`` for anything else."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def check_weights(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str, config: str
) -> None:
    """Check that the weights ``found`` have the keys and shapes of those ``expected``.

    Arguments
    ---------
    expected : dict[str, torch.Tensor]
        The state dict of the architecture to load into.
    found : dict[str, torch.Tensor]
        The state dict read from ``source``.
    source : str
        The file or URI of ``found``, named in the message.
    config : str
        What ``expected`` was built from (``its stored config``), named in the message.

    Raises
    ------
    ProbeError
        When keys are missing or unexpected, or a shape differs; one sentence with the
        counts and the first mismatch.

    Example
    -------
    >>> check_weights({"w": torch.ones(2)}, {"w": torch.ones(3)}, "enc.pt", "its config")
    Traceback (most recent call last):
    ...
    smx.downstream.errors.ProbeError: enc.pt does not match the architecture of its config: ...
    """
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [k for k in expected if k in found and _shape_of(found[k]) != _shape_of(expected[k])]
    if not (missing or unexpected or reshaped):
        return
    if reshaped:
        k = reshaped[0]
        first = f"{k} is {list(_shape_of(found[k]))}, expected {list(_shape_of(expected[k]))}"
    elif missing:
        first = f"{missing[0]} is missing"
    else:
        first = f"{unexpected[0]} is unexpected"
    raise ProbeError(
        f"{source} does not match the architecture of {config}: {len(missing)} weights "
        f"missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape "
        f"(first: {first}); was it trained with another model config?"
    )


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The content of an ``encoder.pt``, checked; ProbeError for any unusable file."""
    if not path.is_file():
        raise ProbeError(f"encoder file {path} does not exist; run pre-training first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the same user problem
        raise ProbeError(f"{path} is not a readable torch file ({type(exc).__name__})") from None
    needed = ("format", "params", "state_dict")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in needed):
        have = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ProbeError(
            f"{path} is not an smx encoder file (expected keys {list(needed)}, got {have})"
        )
    if ckpt["format"] != 1:
        raise ProbeError(f"{path} has format {ckpt['format']}; this smx reads format 1")
    return ckpt


def checkpoint_params(path: str | Path) -> Params:
    """The configuration stored in an ``encoder.pt`` (validated).

    Raises
    ------
    ProbeError
        When the file is missing, unreadable, not an smx encoder file, or its config is not
        valid for this smx version.
    """
    ckpt = _read_checkpoint(Path(path))
    return _stored_params(Path(path), ckpt)


def _stored_params(path: Path, ckpt: dict[str, Any]) -> Params:
    """The validated config of a read ``encoder.pt``; ProbeError when it is not valid."""
    try:
        return Params.model_validate(json.loads(ckpt["params"]))
    except (ValidationError, ValueError, TypeError) as exc:
        raise ProbeError(
            f"{path}: its stored config is not valid for this smx version ({exc.__class__.__name__})"
        ) from None


def load_checkpoint_upstream(path: str | Path, params: Params | None = None) -> EncoderUpstream:
    """The frozen encoder of an ``encoder.pt``.

    Arguments
    ---------
    path : str | Path
        The file written by pre-training.
    params : Params | None
        The architecture to load into; None = the config stored in the file.

    Returns
    -------
    EncoderUpstream
        The encoder with the file's weights.

    Raises
    ------
    ProbeError
        When the file is unusable or its weights do not fit the architecture.
    """
    path = Path(path)
    ckpt = _read_checkpoint(path)
    config = "the given config"
    if params is None:
        params, config = _stored_params(path, ckpt), "its stored config"
    fbank, frontend, encoder = build_parts(params)
    upstream = EncoderUpstream(fbank, frontend, encoder, params.model.frontend.frame_seconds)
    state = {_our_key(k): v for k, v in ckpt["state_dict"].items()}
    check_weights(upstream.state_dict(), state, str(path), config)
    upstream.load_state_dict(state)
    upstream.spec = encoder_spec(params)
    return upstream.freeze()


def is_mlflow_uri(source: str) -> bool:
    """True for MLflow model URIs.

    Example
    -------
    >>> is_mlflow_uri("models:/smx-encoder/1"), is_mlflow_uri("models/sm/encoder.pt")
    (True, False)
    """
    return source.startswith(MLFLOW_SCHEMES)


def load_mlflow_upstream(
    uri: str, params: Params | None = None, tracking_uri: str | None = None
) -> tuple[EncoderUpstream, Params]:
    """The frozen encoder of an smx MLflow model (:mod:`smx.serving`) and its architecture.

    The model's files are downloaded to a temporary folder; its ``encoder.pt`` is read with
    ``weights_only=True`` (no pickled object is loaded).

    Arguments
    ---------
    uri : str
        The model URI (``models:/<name>@latest``, ``models:/<name>/<version>``, ``runs:/...``).
    params : Params | None
        The expected architecture; None = the config stored in the model.
    tracking_uri : str | None
        Becomes MLflow's tracking URI for the rest of the process (``models:/`` URIs resolve
        through it); None keeps MLflow's.

    Returns
    -------
    tuple[EncoderUpstream, Params]
        The model's front-end and encoder as a frozen upstream, and its architecture.

    Raises
    ------
    ProbeError
        When the model cannot be downloaded, is not an smx encoder model, was written in
        another model format, or does not fit ``params``.
    """
    import tempfile

    from smx.serving import ModelFolderError, read_model_folder
    from smx.tracking import download_model

    with tempfile.TemporaryDirectory(prefix="smx-model-") as tmp:
        try:
            folder = download_model(uri, Path(tmp), tracking_uri)
        except Exception as exc:  # MLflow raises many types for a bad URI
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise ProbeError(f"cannot load the MLflow model {uri}: {first}") from None
        try:
            path, _ = read_model_folder(folder, uri)
        except ModelFolderError as exc:
            raise ProbeError(str(exc)) from None
        arch = params if params is not None else _stored_params(Path(uri), _read_checkpoint(path))
        upstream = load_checkpoint_upstream(path, arch)
    return upstream, arch


def load_upstream(
    source: str | Path, params: Params | None = None, tracking_uri: str | None = None
) -> tuple[EncoderUpstream, Params]:
    """The frozen pre-trained encoder of ``source`` and the config of its architecture.

    Arguments
    ---------
    source : str | Path
        An ``encoder.pt`` path or an MLflow model URI.
    params : Params | None
        The expected architecture; None = the config stored in ``encoder.pt`` or in the
        MLflow model.
    tracking_uri : str | None
        MLflow tracking URI for model URIs (None = MLflow's default).

    Returns
    -------
    tuple[EncoderUpstream, Params]
        The encoder and the config of its architecture.

    Raises
    ------
    ProbeError
        When the file or model cannot be read, or does not fit the architecture.
    """
    text = str(source)
    if is_mlflow_uri(text):
        return load_mlflow_upstream(text, params, tracking_uri)
    path = Path(text)
    arch = params if params is not None else checkpoint_params(path)
    return load_checkpoint_upstream(path, params), arch
