"""Loading encoders: encoder.pt round trip, frozen behaviour, mismatch errors, baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from downstream_helpers import tiny_params
from tiny import save_encoder

from smx.downstream.errors import ProbeError
from smx.downstream.upstream import (
    checkpoint_params,
    fbank_upstream,
    load_upstream,
    random_upstream,
)
from smx.ssl.objective import build_objective

AUDIO = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
LENS = torch.tensor([16000, 11000])


@pytest.mark.parametrize("ssl", ["wav2vec2", "bestrq"])
def test_encoder_file_round_trip(tmp_path: Path, ssl: str) -> None:
    params = tiny_params(ssl=ssl)
    torch.manual_seed(3)
    objective = build_objective(params).eval()
    path = save_encoder(objective, params, tmp_path / "encoder.pt")
    upstream, arch = load_upstream(path)
    assert arch == params
    assert checkpoint_params(path) == params
    states, lengths = upstream(AUDIO, LENS)
    # the same forward pass through the objective's own modules
    frontend = objective.extractor if ssl == "wav2vec2" else objective.subsampling
    with torch.no_grad():
        feats, frames = objective.fbank(AUDIO, LENS)
        latents, latent_lens = frontend(feats, frames)
        expected = objective.encoder(latents, latent_lens)
    assert states.shape == (2, latents.shape[1], 3, 32)  # input + 2 layers
    assert lengths.tolist() == expected.lengths.tolist()
    for layer, hidden in enumerate(expected.hidden_states):
        torch.testing.assert_close(states[:, :, layer], hidden)
    torch.testing.assert_close(states[:, :, -1], expected.last)


def test_loaded_encoder_is_frozen(encoder_file: Path) -> None:
    upstream, _ = load_upstream(encoder_file)
    assert all(not p.requires_grad for p in upstream.parameters())
    upstream.train()  # a frozen upstream ignores this: no dropout
    assert not upstream.training and not any(m.training for m in upstream.modules())
    first, _ = upstream(AUDIO, LENS)
    second, _ = upstream(AUDIO, LENS)
    assert not first.requires_grad
    torch.testing.assert_close(first, second)  # deterministic: dropout is off


def test_config_that_does_not_fit_the_weights(encoder_file: Path, tmp_path: Path) -> None:
    other = tiny_params()
    model = other.model.model_dump()
    model["encoder"]["num_layers"] = 3
    deeper = other.model_copy(update={"model": type(other.model).model_validate(model)})
    with pytest.raises(ProbeError) as err:
        load_upstream(encoder_file, deeper)
    message = str(err.value)
    assert message.startswith(f"{encoder_file} does not match the architecture of the given config")
    assert "missing" in message and "encoder.blocks.2." in message and "\n" not in message
    # a file whose stored config was edited after training
    ckpt = torch.load(encoder_file, weights_only=True)
    stored = json.loads(ckpt["params"])
    stored["model"]["encoder"]["d_model"] = 48
    stored["model"]["mixer"].update(local_hidden=[48], local_out=48, summary_hidden=[48])
    ckpt["params"] = json.dumps(stored)
    edited = tmp_path / "edited.pt"
    torch.save(ckpt, edited)
    with pytest.raises(ProbeError, match="does not match the architecture of its stored config"):
        load_upstream(edited)


def test_unreadable_encoder_files(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="does not exist"):
        load_upstream(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ProbeError, match="not a readable torch file"):
        load_upstream(tmp_path / "text.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ProbeError, match="not an smx encoder file"):
        load_upstream(tmp_path / "other.pt")


def test_baselines(encoder_file: Path) -> None:
    upstream, params = load_upstream(encoder_file)
    random = random_upstream(params, seed=1)
    same = random_upstream(params, seed=1)
    trained = upstream.state_dict()
    assert {k: v.shape for k, v in random.state_dict().items()} == {
        k: v.shape for k, v in trained.items()
    }
    assert not torch.equal(
        random.state_dict()["encoder.input_proj.weight"], trained["encoder.input_proj.weight"]
    )
    torch.testing.assert_close(random.state_dict(), same.state_dict())  # seeded
    fbank = fbank_upstream(params)
    states, frames = fbank(AUDIO, LENS)
    assert states.shape == (2, 101, 1, 80) and frames.tolist() == [101, 69]
    assert fbank.num_layers == 1 and fbank.frame_shift == pytest.approx(0.01)
    assert upstream.frame_shift == pytest.approx(0.02)


def test_extract_reads_each_batch_once_for_every_upstream(
    encoder_file: Path, corpus_root: Path
) -> None:
    from smx.data.manifests import load_cuts
    from smx.downstream.features import extract

    upstream, params = load_upstream(encoder_file)
    fbank = fbank_upstream(params)
    cuts = list(load_cuts(corpus_root / "synth", "train"))[:5]
    both_ups = {"pretrained": upstream, "fbank": fbank}
    both = extract(both_ups, cuts, max_batch_duration=6.0)
    assert len(both["fbank"]) == 5
    assert list(both) == ["pretrained", "fbank"]
    alone = {name: extract({name: up}, cuts, 100.0)[name] for name, up in both_ups.items()}
    for cut in cuts:  # the same states whatever the batching and the company
        for name in both:
            torch.testing.assert_close(both[name][cut.id], alone[name][cut.id])
        assert both["fbank"][cut.id].shape == (1 + cut.num_samples // 160, 1, 80)  # 10 ms hop
        frames = both["pretrained"][cut.id].shape[0]
        assert frames == pytest.approx(cut.duration / upstream.frame_shift, abs=4)
        assert both["pretrained"][cut.id].shape[1:] == (upstream.num_layers, upstream.dim)
