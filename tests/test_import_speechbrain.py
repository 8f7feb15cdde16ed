"""``smx import speechbrain`` and the pretrain stage's ``init: {speechbrain: DIR}``.

Checkpoint folders are written as SpeechBrain writes them (``torch.save`` of its modules'
state dicts, ``InputNormalization._save`` for the feature statistics), from SpeechBrain's
own modules with random weights (the pinned ``test-speechbrain`` extra). The imported
encoder file is run through :func:`smx.downstream.upstream.load_upstream`, as probing and
fine-tuning load it, on a padded batch of waveforms, and each utterance is compared with
SpeechBrain's whole pipeline (features, normalisation, front-end, encoder) on that
utterance alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML
from typer.testing import CliRunner

from smx.cli import app
from smx.config import Params, load
from smx.downstream.upstream import load_upstream
from smx.stages.common import run_stage

pytest.importorskip("speechbrain", reason="make test installs it")
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
from speechbrain.lobes.models.transformer.Conformer import ConformerEncoder
from speechbrain.lobes.models.transformer.TransformerASR import (
    EncoderWrapper as AsrEncoderWrapper,
)
from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
from speechbrain.lobes.models.wav2vec import EncoderWrapper, W2VLatentExtractor
from speechbrain.nnet.CNN import Conv1d
from speechbrain.nnet.linear import Linear
from speechbrain.nnet.normalization import LayerNorm
from speechbrain.processing.features import InputNormalization

TOL = 1e-5
D, HEADS, LAYERS, D_FFN, KERNEL, CSGU = 64, 4, 2, 128, 7, 96
CNN_CHANNELS, CONV2D_CHANNELS = [32, 24], [16, 8]
SMX = shutil.which("smx", path=str(Path(sys.executable).parent)) or "smx"


def perturb(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return module.eval()


def waveforms(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        time = torch.arange(length) / 16000
        tone = 0.3 * torch.sin(2 * torch.pi * (150.0 + 400.0 * row) * time)
        wav[row, :length] = tone + 0.05 * torch.randn(length, generator=generator)
    return wav, torch.tensor(lengths)


# ------------------------------------------------------------------------ SpeechBrain saves


class W2v2Save(torch.nn.Module):
    """The modules of a wav2vec 2.0 save (arXiv 2407.13377): mel CNN and EncoderWrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = W2VLatentExtractor(CNN_CHANNELS, kernel_sizes=[3, 3], strides=[2, 1])
        self.cnn.extractor = ConvolutionFrontEnd(  # the recipe's extractor over 80 mel bins
            (None, 16000, 80),
            num_blocks=2,
            num_layers_per_block=1,
            out_channels=CNN_CHANNELS,
            kernel_sizes=[3, 3],
            strides=[2, 1],
            dilations=[1, 1],
            residuals=[False, False],
            conv_module=Conv1d,
            activation=torch.nn.GELU,
            norm=LayerNorm,
            dropout=0.0,
            conv_bias=False,
            padding="valid",
        )
        conformer = ConformerEncoder(
            num_layers=LAYERS, d_model=D, d_ffn=D_FFN, nhead=HEADS, kernel_size=KERNEL,
            dropout=0.0, attention_type="regularMHA",
        )  # fmt: skip
        self.wrapper = EncoderWrapper(CNN_CHANNELS[-1], D, conformer, dropout_encoder_input=0.0)
        self.fbank = Fbank(sample_rate=16000, n_fft=400, n_mels=80)
        self.normalize = InputNormalization(norm_type="sentence")

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.cnn.state_dict(), folder / "CNN.ckpt")
        torch.save(self.wrapper.state_dict(), folder / "latent_encoder.ckpt")
        return folder

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """One utterance ``[1, S]`` through the recipe's pipeline -> ``[T, D]``."""
        feats = self.normalize(self.fbank(wav), torch.ones(1))
        x = torch.nn.functional.layer_norm(feats, feats.shape[1:])
        latents = self.cnn.norm(self.cnn.extractor(x))
        return self.wrapper(latents)["embeddings"][0]


class AsrSave(torch.nn.Module):
    """The modules of an ASR save: model.ckpt = [CNN, TransformerASR, head], normalizer.ckpt.

    Saved with ``bestrq``, the encoder is wrapped as in the BEST-RQ recipe
    ([CNN, EncoderWrapper(TransformerASR)], no head).
    """

    def __init__(self) -> None:
        super().__init__()
        self.cnn = ConvolutionFrontEnd(
            (8, 10, 80), num_blocks=2, num_layers_per_block=1, out_channels=CONV2D_CHANNELS,
            kernel_sizes=(3, 3), strides=(2, 2), residuals=(False, False),
        )  # fmt: skip
        self.transformer = TransformerASR(
            tgt_vocab=10, input_size=CONV2D_CHANNELS[-1] * 20, d_model=D, nhead=HEADS,
            num_encoder_layers=LAYERS, num_decoder_layers=0, d_ffn=D_FFN, dropout=0.0,
            encoder_module="branchformer", attention_type="RelPosMHAXL", positional_encoding=None,
            normalize_before=True, causal=False, kernel_size=KERNEL, csgu_linear_units=CSGU,
        )  # fmt: skip
        self.head = Linear(input_size=D, n_neurons=10)  # a CTC head: not part of the encoder
        self.fbank = Fbank(sample_rate=16000, n_fft=400, n_mels=80)
        self.normalize = InputNormalization(norm_type="global")

    def fit_statistics(self) -> None:
        """SpeechBrain's global statistics from two training batches (utterances alone)."""
        self.normalize.train()
        for seed in (20, 21):
            wav, samples = waveforms([12000, 8000], seed)
            alone = [self.fbank(wav[b : b + 1, :n])[0] for b, n in enumerate(samples.tolist())]
            frames = torch.tensor([a.shape[0] for a in alone])
            batch = torch.nn.utils.rnn.pad_sequence(alone, batch_first=True)
            self.normalize(batch, frames / frames.max())
        self.normalize.eval()

    def save(self, folder: Path, bestrq: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if bestrq:
            model = torch.nn.ModuleList([self.cnn, AsrEncoderWrapper(self.transformer)])
        else:
            model = torch.nn.ModuleList([self.cnn, self.transformer, self.head])
        torch.save(model.state_dict(), folder / "model.ckpt")
        self.normalize._save(folder / "normalizer.ckpt")  # as SpeechBrain's checkpointer
        return folder

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        feats = self.normalize(self.fbank(wav), torch.ones(1))
        return self.transformer.encode(self.cnn(feats))[0]


def model_section(kind: str) -> dict:
    """The smx ``model`` of the saves above (sizes only; the import adds the parity)."""
    w2v = kind == "wav2vec2"
    frontend = {"kind": "mel_cnn", "cnn_channels": CNN_CHANNELS} if w2v else {
        "kind": "conv2d", "conv2d_channels": CONV2D_CHANNELS, "normalize": "global"
    }  # fmt: skip
    encoder = {
        "block": "conformer" if w2v else "branchformer",
        "num_layers": LAYERS, "d_model": D, "d_ffn": D_FFN, "kernel_size": KERNEL,
        "csgu_units": CSGU, "activation": "swish" if w2v else "gelu",
        "pos_enc": "abs" if w2v else "none",
    }  # fmt: skip
    mixer = {"kind": "mhsa", "heads": HEADS, "pos": "abs" if w2v else "relpos"}
    return {"frontend": frontend, "encoder": encoder, "mixer": mixer}


def write_config(path: Path, kind: str, **changes: dict) -> Path:
    data = {"model": model_section(kind), "ssl": {"kind": kind}}
    for section, values in changes.items():
        data["model"][section] |= values
    with path.open("w") as fh:
        YAML().dump(data, fh)
    return path


@pytest.fixture(scope="module")
def w2v2(tmp_path_factory: pytest.TempPathFactory) -> tuple[W2v2Save, Path]:
    torch.manual_seed(0)
    save = perturb(W2v2Save(), seed=1)
    return save, save.save(tmp_path_factory.mktemp("sb") / "CKPT+w2v2")


@pytest.fixture(scope="module")
def asr(tmp_path_factory: pytest.TempPathFactory) -> tuple[AsrSave, Path]:
    torch.manual_seed(0)
    save = perturb(AsrSave(), seed=2)
    save.fit_statistics()
    return save, save.save(tmp_path_factory.mktemp("sb") / "CKPT+asr")


def compare(save: torch.nn.Module, encoder_file: Path) -> float:
    """Largest difference between the imported upstream's last layer on a padded batch and
    SpeechBrain's pipeline on each utterance alone."""
    upstream, _ = load_upstream(encoder_file)
    wav, samples = waveforms([16000, 11000, 6400], seed=3)
    states, lengths = upstream(wav, samples)
    worst = 0.0
    with torch.no_grad():
        for row, n in enumerate(samples.tolist()):
            expected = save.encode(wav[row : row + 1, :n])
            assert lengths[row] == expected.shape[0]
            worst = max(worst, (states[row, : expected.shape[0], -1] - expected).abs().max().item())
    return worst


# ------------------------------------------------------------------------ imports


@pytest.mark.parametrize("command", [["import"], ["import", "speechbrain"]])
def test_help_has_an_example(command: list[str]) -> None:
    res = CliRunner().invoke(app, [*command, "--help"])
    assert res.exit_code == 0 and "Example: smx import speechbrain" in res.output


def test_cli_imports_a_wav2vec2_save(w2v2, tmp_path: Path) -> None:
    save, folder = w2v2
    config = write_config(tmp_path / "config.yaml", "wav2vec2")
    out = tmp_path / "models" / "sb" / "encoder.pt"
    res = subprocess.run(
        [SMX, "import", "speechbrain", str(folder), "--config", str(config), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "CNN.ckpt, latent_encoder.ckpt" in res.stdout and "fbank speechbrain" in res.stdout
    assert compare(save, out) < TOL
    stored = torch.load(out, weights_only=True)
    params = Params.model_validate_json(stored["params"])
    assert params.init is not None and params.init.speechbrain == str(folder)
    assert params.model.frontend.fbank == "speechbrain" and stored["step"] == 0


@pytest.mark.parametrize("bestrq", [False, True])
def test_cli_imports_an_asr_or_bestrq_save_with_global_statistics(
    asr, tmp_path: Path, bestrq: bool
) -> None:
    save, folder = asr
    if bestrq:  # the same weights in the BEST-RQ layout
        folder = save.save(tmp_path / "CKPT+bestrq", bestrq=True)
    config = write_config(tmp_path / "config.yaml", "bestrq")
    out = tmp_path / "encoder.pt"
    args = ["import", "speechbrain", str(folder), "--config", str(config), "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    skipped = "skipped 2 decoder and head keys" in res.output
    assert skipped != bestrq, res.output
    assert "normalizer.ckpt" in res.output and "relpos symmetric" in res.output
    assert "conv2d_padding reflect" in res.output and "conv_padding reflect" in res.output
    assert compare(save, out) < TOL


# ------------------------------------------------------------------------ bad input


def corrupt_key(folder: Path, tmp: Path, file: str, key: str, value: torch.Tensor | None) -> Path:
    """A copy of ``folder`` with ``key`` of ``file`` replaced (None: removed)."""
    copy = tmp / "bad"
    shutil.copytree(folder, copy)
    state = torch.load(copy / file, weights_only=True)
    if value is None:
        del state[key]
    else:
        state[key] = value
    torch.save(state, copy / file)
    return copy


ENCODER_FILE = "latent_encoder.ckpt"
PROJECTION = "input_projector.weight"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", r"holds neither CNN\.ckpt and latent_encoder\.ckpt .* nor model\.ckpt"),
        ("half", r"has CNN\.ckpt but no latent_encoder\.ckpt"),
        ("unreadable", r"latent_encoder\.ckpt is not a readable torch file"),
        ("missing", r"latent_encoder\.ckpt is missing 'latent_encoder\.layers\.1\.norm2\.norm\.bias'"),
        ("extra", r"latent_encoder\.ckpt has an unexpected key 'latent_encoder\.layers\.2\.x'"),
        ("size", r"latent_encoder\.ckpt\['[a-z_.]+'\] has shape \[64\] but the config needs \[48\]"),
        ("layers", r"latent_encoder\.ckpt holds conformer layers \('latent_encoder\.layers\.0\.ffn_module1\..*set model\.encoder\.block to 'conformer'"),
        ("block", r"latent_encoder\.ckpt: model\.encoder\.block 'transformer' has no SpeechBrain import"),
        ("ssl", r"latent_encoder\.ckpt: the encoder has a mask embedding: set ssl\.kind to 'wav2vec2'"),
        ("kind", r"latent_encoder\.ckpt holds a wav2vec 2\.0 latent extractor: set model\.frontend\.kind to 'mel_cnn'"),
        ("norm", r"CKPT\+w2v2 has no global feature statistics"),
    ],
)  # fmt: skip
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(
    w2v2, tmp_path: Path, case: str, message: str
) -> None:
    _, folder = w2v2
    changes, kind = {}, "wav2vec2"
    if case == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "half":
        folder = tmp_path / "half"
        folder.mkdir()
        shutil.copy(w2v2[1] / "CNN.ckpt", folder)
    elif case == "unreadable":
        folder = shutil.copytree(folder, tmp_path / "bad")
        (folder / ENCODER_FILE).write_bytes(b"not a torch file")
    elif case == "missing":
        folder = corrupt_key(
            folder, tmp_path, ENCODER_FILE, "latent_encoder.layers.1.norm2.norm.bias", None
        )
    elif case == "extra":
        folder = corrupt_key(
            folder, tmp_path, ENCODER_FILE, "latent_encoder.layers.2.x", torch.zeros(1)
        )
    elif case == "size":
        changes = {"encoder": {"d_model": 48, "d_ffn": 96}}
    elif case == "layers":
        changes = {"encoder": {"block": "branchformer", "activation": "gelu"}}
    elif case == "block":
        changes = {"encoder": {"block": "transformer"}}
    elif case == "ssl":
        kind = "bestrq"
        changes = {"frontend": {"kind": "mel_cnn"}}
    elif case == "kind":
        changes = {"frontend": {"kind": "conv2d"}}
    elif case == "norm":
        changes = {"frontend": {"normalize": "global"}}
    config = write_config(tmp_path / "config.yaml", kind, **changes)
    if case == "ssl":  # BEST-RQ's frames must stack to the mel CNN's 2x subsampling
        data = YAML().load(config.read_text())
        data["ssl"]["stack_frames"] = 2
        YAML().dump(data, config)
    out = tmp_path / "out" / "encoder.pt"
    args = ["import", "speechbrain", str(folder), "--config", str(config), "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not out.parent.exists()


def test_statistics_that_the_config_does_not_use_are_an_error(asr, tmp_path: Path) -> None:
    _, folder = asr
    config = write_config(tmp_path / "c.yaml", "bestrq", frontend={"normalize": "utterance"})
    out = tmp_path / "encoder.pt"
    args = ["import", "speechbrain", str(folder), "--config", str(config), "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "normalizer.ckpt holds global feature statistics" in res.output
    assert "set model.frontend.normalize to 'global'" in res.output and not out.exists()


# ------------------------------------------------------------------------ the pipeline


def stage_config(path: Path, folder: Path) -> Params:
    """A config whose variant ``sb`` imports ``folder`` and whose ``mhsa`` pre-trains."""
    data = {
        "model": model_section("wav2vec2"),
        "ssl": {"kind": "wav2vec2"},
        "variants": {"sb": {"init": {"speechbrain": str(folder)}}, "mhsa": {}},
    }
    with path.open("w") as fh:
        YAML().dump(data, fh)
    return load(path)


def test_a_variant_with_init_gets_the_parity_options(w2v2, tmp_path: Path) -> None:
    params = stage_config(tmp_path / "params.yaml", w2v2[1])
    sb, plain = params.variant("sb"), params.variant("mhsa")
    assert sb.init is not None and sb.init.speechbrain == str(w2v2[1])
    assert sb.model.frontend.fbank == "speechbrain" and plain.model.frontend.fbank == "smx"
    assert (
        "init" not in plain.model_dump() and "fbank" not in plain.model_dump()["model"]["frontend"]
    )
    with pytest.raises(ValueError, match=r"variants\.x\.init\.speechbrain"):
        Params.model_validate({"variants": {"x": {"init": {"speechbrain": 3}}}})
    with pytest.raises(ValueError, match=r"init\b.*belongs inside a variant"):
        Params.model_validate({"init": {"speechbrain": "d"}, "variants": {"x": {}}})


def test_pretrain_stage_imports_a_variant_with_init(w2v2, tmp_path: Path, capsys) -> None:
    save, folder = w2v2
    params = stage_config(tmp_path / "params.yaml", folder)
    resolved = tmp_path / "resolved" / "sb" / "params.json"
    resolved.parent.mkdir(parents=True)
    resolved.write_text(json.dumps(params.variant("sb").model_dump(mode="json")))
    args = ["--variant", "sb", "--resolved", str(tmp_path / "resolved"), "--out", str(tmp_path)]
    assert run_stage("pretrain", args) == 0
    said = capsys.readouterr().out
    assert f"pretrain@sb: imported {folder} (SpeechBrain) instead of pre-training" in said
    encoder = tmp_path / "models" / "sb" / "encoder.pt"
    assert compare(save, encoder) < TOL
    config = json.loads((tmp_path / "models" / "sb" / "config.json").read_text())
    assert config["init"] == {"speechbrain": str(folder)}
    metrics = json.loads((tmp_path / "metrics" / "pretrain" / "sb.json").read_text())
    assert metrics["init"] == "speechbrain" and metrics["steps"] == 0
    assert metrics["files"] == ["CNN.ckpt", "latent_encoder.ckpt"] and metrics["parameters"] > 0
    assert (tmp_path / "plots" / "pretrain" / "sb.csv").read_text() == "step,loss\n"


def test_pretrain_stage_refuses_a_missing_folder(tmp_path: Path, capsys) -> None:
    params = stage_config(tmp_path / "params.yaml", tmp_path / "nowhere")
    resolved = tmp_path / "resolved" / "sb" / "params.json"
    resolved.parent.mkdir(parents=True)
    resolved.write_text(json.dumps(params.variant("sb").model_dump(mode="json")))
    args = ["--variant", "sb", "--resolved", str(tmp_path / "resolved"), "--out", str(tmp_path)]
    assert run_stage("pretrain", args) == 2
    assert f"pretrain@sb: {tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()
