"""Import a SpeechBrain checkpoint folder as an smx encoder file (``encoder.pt``).

Two layouts of a SpeechBrain checkpoint folder (``save/CKPT+...``) are read, each file with
``torch.load(weights_only=True)`` (SpeechBrain itself is never imported):

- wav2vec 2.0 (the SummaryMixing recipe of arXiv 2407.13377): ``CNN.ckpt``, the latent
  extractor over log-mel frames (``model.frontend.kind: mel_cnn``), and
  ``latent_encoder.ckpt``, the ``EncoderWrapper`` (input projection, mask embedding,
  Conformer or Branchformer). Its features are normalised per utterance. The config's
  ``ssl.kind`` must be ``wav2vec2`` (the encoder keeps its mask embedding).
- ASR or BEST-RQ: ``model.ckpt``, a ModuleList whose module ``0`` is the Conv2d front-end
  (``kind: conv2d``) and module ``1`` a ``TransformerASR`` (ASR) or an ``EncoderWrapper``
  around one (BEST-RQ, keys ``1.transformer.``). Its decoder and the modules after ``1``
  (CTC and sequence heads) are not part of the encoder and are skipped. ``normalizer.ckpt``
  or ``normalize.ckpt``, SpeechBrain's ``InputNormalization``, holds global feature
  statistics when the recipe normalised globally: then ``model.frontend.normalize`` must be
  ``global`` and the statistics are imported (frozen), else ``utterance``. ``ssl.kind``
  must be ``bestrq`` (no mask embedding).

Sizes come from the config and the converters of :mod:`smx.nn.speechbrain` check every
tensor against it. The written config is the given one with the SpeechBrain parity options
(:func:`smx.config.speechbrain_parity`), ``init: {speechbrain: DIR}`` and no variants. Every
problem of the input is a :class:`SpeechBrainImportError`, one sentence naming the file and
the key, raised before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import torch

from smx.atomic import atomic_path
from smx.config import Params, speechbrain_parity
from smx.nn.build import build_fbank
from smx.nn.speechbrain import convert_speechbrain_cnn, convert_speechbrain_encoder

Layout = Literal["wav2vec2", "asr"]
WAV2VEC2_FILES = ("CNN.ckpt", "latent_encoder.ckpt")
ASR_FILE = "model.ckpt"
STATS_FILES = ("normalizer.ckpt", "normalize.ckpt")
#: parts of an ASR encoder that are not the encoder (relative to its prefix)
ASR_DECODER = ("decoder.*", "custom_tgt_module.*")
#: the state-dict prefix of the front-end network in encoder.pt, per SSL objective
FRONTEND_PREFIX = {"wav2vec2": "extractor.", "bestrq": "subsampling."}


class SpeechBrainImportError(ValueError):
    """A checkpoint folder that cannot be imported with the given config (one sentence)."""


@dataclass
class ImportedEncoder:
    """An imported encoder: its config, the state dict of ``encoder.pt``, what was read."""

    params: Params
    state_dict: dict[str, torch.Tensor]
    files: list[Path]
    layout: Layout
    skipped: int  # keys of a model.ckpt's decoder and heads, not part of the encoder

    @property
    def parameters(self) -> int:
        """Weights of the front-end and encoder (feature statistics not counted)."""
        return sum(v.numel() for k, v in self.state_dict.items() if not k.startswith("fbank."))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The mapping saved in ``path`` (``weights_only``); SpeechBrainImportError if unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the same user problem
        raise SpeechBrainImportError(
            f"{path} is not a readable torch file ({type(exc).__name__})"
        ) from None
    if not isinstance(state, Mapping):
        raise SpeechBrainImportError(f"{path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict file: every value must be a tensor."""
    state = read_checkpoint(path)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise SpeechBrainImportError(
                f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor"
            )
    return state


def folder_layout(folder: Path) -> tuple[Layout, list[Path]]:
    """Which SpeechBrain save ``folder`` is, and its weight files.

    Raises
    ------
    SpeechBrainImportError
        When ``folder`` is missing or holds neither layout (completely).
    """
    if not folder.is_dir():
        raise SpeechBrainImportError(f"{folder} is not a folder")
    present = [name for name in WAV2VEC2_FILES if (folder / name).is_file()]
    if present:
        missing = [name for name in WAV2VEC2_FILES if name not in present]
        if missing:
            raise SpeechBrainImportError(
                f"{folder} has {present[0]} but no {missing[0]} (a wav2vec 2.0 save needs both)"
            )
        return "wav2vec2", [folder / name for name in WAV2VEC2_FILES]
    if (folder / ASR_FILE).is_file():
        return "asr", [folder / ASR_FILE]
    saves = sorted(p.name for p in folder.glob("CKPT+*") if p.is_dir())
    hint = f"; pass one of its checkpoint folders ({', '.join(saves)})" if saves else ""
    raise SpeechBrainImportError(
        f"{folder} holds neither {' and '.join(WAV2VEC2_FILES)} (a wav2vec 2.0 save) nor "
        f"{ASR_FILE} (an ASR or BEST-RQ save){hint}"
    )


def _check_config(layout: Layout, params: Params, source: Path) -> None:
    """The config's front-end and objective must be those of the folder's layout."""
    kind, ssl = ("mel_cnn", "wav2vec2") if layout == "wav2vec2" else ("conv2d", "bestrq")
    what = "a wav2vec 2.0 latent extractor" if layout == "wav2vec2" else "a Conv2d front-end"
    if params.model.frontend.kind != kind:
        raise SpeechBrainImportError(
            f"{source} holds {what}: set model.frontend.kind to '{kind}' "
            f"(the config has '{params.model.frontend.kind}')"
        )
    if params.ssl.kind != ssl:
        has = "has a mask embedding" if layout == "wav2vec2" else "has no mask embedding"
        raise SpeechBrainImportError(
            f"{source}: the encoder {has}: set ssl.kind to '{ssl}' "
            f"(the config has '{params.ssl.kind}')"
        )


def _global_stats(
    folder: Path, n_mels: int
) -> tuple[Path, torch.Tensor, torch.Tensor, float] | None:
    """The global feature statistics of an ASR or BEST-RQ save, if it has some.

    Returns
    -------
    tuple | None
        ``(file, mean, var, count)`` from the first of :data:`STATS_FILES` whose
        ``glob_mean`` and ``glob_std`` hold one value per mel bin; None when no such file
        exists (or it holds per-utterance normalisation, whose statistics are empty).
    """
    for name in STATS_FILES:
        path = folder / name
        if not path.is_file():
            continue
        stats = read_checkpoint(path)
        mean, std = stats.get("glob_mean"), stats.get("glob_std")
        if not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor):
            raise SpeechBrainImportError(
                f"{path} has no tensors 'glob_mean' and 'glob_std' (keys: {sorted(stats)})"
            )
        if mean.numel() != n_mels:
            return None  # per-utterance normalisation: no statistics
        if std.numel() != n_mels:
            raise SpeechBrainImportError(
                f"{path}: 'glob_std' has {std.numel()} values, 'glob_mean' {n_mels}"
            )
        count = float(stats.get("count", 1) or 1)
        return path, mean.reshape(-1).double(), std.reshape(-1).double().square(), count
    return None


def _fbank_state(folder: Path, params: Params, layout: Layout) -> tuple[dict, list[Path]]:
    """The ``fbank.`` entries of encoder.pt (global statistics) and the file they came from."""
    frontend = params.model.frontend
    stats = _global_stats(folder, frontend.n_mels) if layout == "asr" else None
    if frontend.normalize == "utterance":
        if stats is not None:
            raise SpeechBrainImportError(
                f"{stats[0]} holds global feature statistics ('glob_mean' of "
                f"{frontend.n_mels} bins): set model.frontend.normalize to 'global'"
            )
        return {}, []
    if stats is None:
        where = " or ".join(STATS_FILES) if layout == "asr" else "none in a wav2vec 2.0 save"
        raise SpeechBrainImportError(
            f"{folder} has no global feature statistics of {frontend.n_mels} bins ({where}): "
            "set model.frontend.normalize to 'utterance'"
        )
    path, mean, var, count = stats
    fbank = build_fbank(frontend, params.data.sample_rate)
    fbank.set_global_stats(mean, var, count)
    return {f"fbank.{k}": v for k, v in fbank.state_dict().items()}, [path]


def _wav2vec2_state(files: list[Path], params: Params) -> tuple[dict, dict]:
    """Front-end and encoder state dicts of a wav2vec 2.0 save (CNN.ckpt, latent_encoder.ckpt)."""
    cnn_path, encoder_path = files
    cnn = convert_speechbrain_cnn(_tensors(cnn_path), params.model.frontend, source=str(cnn_path))
    encoder = convert_speechbrain_encoder(
        _tensors(encoder_path), params.model, source=str(encoder_path)
    )
    return cnn, encoder


def _asr_prefix(state: Mapping[str, torch.Tensor], path: Path) -> str:
    """The encoder's prefix in a model.ckpt; every key must sit in a numbered module."""
    for key in state:
        if not re.match(r"\d+\.", key):
            raise SpeechBrainImportError(
                f"{path} has an unexpected key {key!r} (a model.ckpt holds a ModuleList: "
                "keys start with the module's number)"
            )
    return "1.transformer." if any(k.startswith("1.transformer.") for k in state) else "1."


def _asr_state(files: list[Path], params: Params) -> tuple[dict, dict, int]:
    """Front-end and encoder state dicts of an ASR or BEST-RQ model.ckpt; keys skipped."""
    (path,) = files
    state = _tensors(path)
    prefix = _asr_prefix(state, path)
    stray = [k for k in state if k.startswith("1.") and not k.startswith(prefix)]
    if stray:
        raise SpeechBrainImportError(
            f"{path} has an unexpected key {stray[0]!r} beside the encoder under {prefix!r}"
        )
    cnn = convert_speechbrain_cnn(state, params.model.frontend, prefix="0.", source=str(path))
    encoder = convert_speechbrain_encoder(
        state, params.model, prefix=prefix, ignore=ASR_DECODER, source=str(path)
    )
    inside = [k[len(prefix) :] for k in state if k.startswith(prefix)]
    decoder = sum(any(fnmatchcase(k, pattern) for pattern in ASR_DECODER) for k in inside)
    heads = sum(not k.startswith(("0.", "1.")) for k in state)
    return cnn, encoder, decoder + heads


def imported_params(params: Params, folder: Path) -> Params:
    """The config of the imported encoder: ``params`` with the SpeechBrain parity options,
    ``init: {speechbrain: folder}`` and no variants.

    Example
    -------
    >>> p = imported_params(Params(), Path("save/CKPT+1"))
    >>> p.model.frontend.fbank, p.init.speechbrain, p.variants
    ('speechbrain', 'save/CKPT+1', {})
    """
    data = params.model_dump()
    data["model"] = speechbrain_parity(params.model).model_dump()
    data["variants"] = {}
    data["init"] = {"speechbrain": str(folder)}
    return Params.model_validate(data)


def import_speechbrain(folder: str | Path, params: Params) -> ImportedEncoder:
    """Read the SpeechBrain save ``folder`` as the encoder of ``params`` (module docstring).

    Arguments
    ---------
    folder : str | Path
        A SpeechBrain checkpoint folder.
    params : Params
        The config whose model the checkpoint holds (sizes, block, mixer, front-end,
        feature normalisation); its variants are not looked at.

    Returns
    -------
    ImportedEncoder
        The written config (parity options set), the ``encoder.pt`` state dict (``fbank.``,
        ``extractor.`` or ``subsampling.``, ``encoder.``) and the files read.

    Raises
    ------
    SpeechBrainImportError
        A missing or unreadable file, a config that does not fit the folder, a missing,
        misshaped or unused key, an unsupported block or mixer.
    """
    folder = Path(folder)
    layout, files = folder_layout(folder)
    params = imported_params(params, folder)
    _check_config(layout, params, files[-1])
    try:
        fbank, stats_files = _fbank_state(folder, params, layout)
        if layout == "wav2vec2":
            (cnn, encoder), skipped = _wav2vec2_state(files, params), 0
        else:
            cnn, encoder, skipped = _asr_state(files, params)
    except SpeechBrainImportError:
        raise
    except ValueError as exc:  # the converters' one-sentence checks
        message = str(exc)
        if not any(str(path) in message for path in files):  # a check of the config alone
            message = f"{files[-1]}: {message}"
        raise SpeechBrainImportError(message) from None
    prefix = FRONTEND_PREFIX[params.ssl.kind]
    state = fbank | {prefix + k: v for k, v in cnn.items()}
    state |= {f"encoder.{k}": v for k, v in encoder.items()}
    return ImportedEncoder(params, state, files + stats_files, layout, skipped)


def write_encoder_file(imported: ImportedEncoder, out: str | Path) -> Path:
    """Write ``imported`` atomically as an smx encoder file (format 1) at ``out``.

    The fields are those pre-training writes (:mod:`smx.downstream.upstream` reads them):
    ``step`` 0 (SpeechBrain's is not in the weight files), the config hash and the config;
    ``source_hash`` is empty, as the weights were not trained by this code.
    """
    from smx.train.checkpoint import config_hash

    out = Path(out)
    with atomic_path(out) as tmp:
        torch.save(
            {
                "format": 1,
                "step": 0,
                "config_hash": config_hash(imported.params),
                "source_hash": "",
                "params": imported.params.model_dump_json(),
                "state_dict": {k: v.contiguous() for k, v in imported.state_dict.items()},
            },
            tmp,
        )
    return out
