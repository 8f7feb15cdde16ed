"""Streaming evaluation of the CTC model without Ray: chunk by chunk equals the chunk-masked
offline forward, chunk sizes in seconds become frames, bad sizes are refused, the fine-tuning
scores carry one offline and one streaming pair per chunk size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from finetune_helpers import finetune_params

from smx.config import ConfigError, Params, load
from smx.downstream.ctc import CTCModel, build_ctc_model, transcribe
from smx.downstream.decoding import greedy_decode
from smx.downstream.streaming_eval import (
    chunk_frames,
    metric_key,
    stream_chunks,
    stream_log_probs,
    unstreamable_mixer,
)
from smx.downstream.tasks import load_task_data
from smx.nn.streaming import ChunkConfig
from smx.train.finetune import evaluate, summary_line

#: 2 Conformer layers of width 16, 20 ms frames (mel + CNN strides 2, 1)
MODEL = {
    "frontend": {"cnn_channels": [16, 16]},
    "encoder": {"num_layers": 2, "d_model": 16, "d_ffn": 32, "kernel_size": 3, "layerdrop": 0.0},
}
MIXERS = {
    "summarymixing": {
        "kind": "summarymixing",
        "local_hidden": [16],
        "local_out": 16,
        "summary_hidden": [16],
        "heads": 2,
    },
    "mhsa": {"kind": "mhsa", "heads": 2},
}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(mixer: str, vocab_size: int = 7) -> CTCModel:
    params = Params.model_validate({"model": {**MODEL, "mixer": MIXERS[mixer]}})
    torch.manual_seed(0)
    return build_ctc_model(params, vocab_size).eval()


def audio_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances of 1.0 s and 0.62 s (48 and 29 encoder frames)."""
    audio = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    return audio, torch.tensor([16000, 9920])


def chunked_offline(model: CTCModel, audio, audio_lens, chunk: ChunkConfig | None):
    """The reference: the whole utterance through ``Encoder.forward(chunk=...)`` at once."""
    feats, frames = model.fbank(audio, audio_lens)
    latents, lengths = model.frontend(feats, frames)
    encoded = model.encoder(latents, lengths, chunk=chunk).last
    return model.head(encoded).log_softmax(-1), lengths


@pytest.mark.parametrize("mixer", ["summarymixing", "mhsa"])
@pytest.mark.parametrize(("chunk_size", "left_chunks"), [(8, None), (8, 1), (5, 0), (16, 2)])
def test_chunk_by_chunk_equals_the_chunk_masked_offline_forward(mixer, chunk_size, left_chunks):
    model = tiny_model(mixer)
    audio, audio_lens = audio_batch()
    chunk = ChunkConfig(chunk_size, left_chunks)
    with torch.no_grad():
        streamed, lengths = stream_log_probs(model, audio, audio_lens, chunk)
        expected, expected_lengths = chunked_offline(model, audio, audio_lens, chunk)
    assert lengths.tolist() == expected_lengths.tolist() == [48, 29]
    real = torch.arange(48)[None, :] < lengths[:, None]
    torch.testing.assert_close(streamed[real], expected[real], atol=1e-5, rtol=1e-5)
    hyps = greedy_decode(streamed, lengths)
    assert hyps == greedy_decode(expected, expected_lengths)
    assert all(hyps)  # random weights: some non-blank output to compare
    if left_chunks is not None:  # a limited context changes what the chunks see
        offline, _ = chunked_offline(model, audio, audio_lens, None)
        assert not torch.allclose(streamed[real], offline[real], atol=1e-3)


@pytest.mark.parametrize("mixer", ["summarymixing", "mhsa"])
def test_a_chunk_longer_than_the_utterance_is_offline_decoding(mixer, corpus_root: Path):
    data = load_task_data(corpus_root / "synth", "asr")
    items = data.dev[:4]
    model = tiny_model(mixer, len(data.vocab))
    offline = transcribe(model, items, data.vocab, max_batch_duration=20.0)
    streamed = transcribe(
        model, items, data.vocab, max_batch_duration=20.0, chunk=ChunkConfig(10_000, 0)
    )
    assert streamed == offline and any(offline.values())
    short = transcribe(model, items, data.vocab, max_batch_duration=20.0, chunk=ChunkConfig(4, 0))
    assert short != offline  # 80 ms chunks without left context: not the same model


def test_chunk_sizes_in_seconds_become_encoder_frames() -> None:
    # mel + CNN: 10 ms hop x 2 = 20 ms frames; conv2d: 10 ms x 4 = 40 ms
    mel = Params.model_validate({"model": {"streaming": {"eval_left": 3}}})
    assert stream_chunks(mel) == {
        0.32: ChunkConfig(16, 3),
        0.64: ChunkConfig(32, 3),
        1.28: ChunkConfig(64, 3),
    }
    conv = Params.model_validate(
        {
            "model": {"frontend": {"kind": "conv2d"}},
            "downstream": {"finetune": {"stream_chunks": [0.04, 0.5, 2.0]}},
        }
    )
    assert stream_chunks(conv) == {
        0.04: ChunkConfig(1, None),
        0.5: ChunkConfig(12, None),  # 12.5 frames: nearest whole number (even)
        2.0: ChunkConfig(50, None),
    }
    none = Params.model_validate({"downstream": {"finetune": {"stream_chunks": []}}})
    assert stream_chunks(none) == {}
    assert (
        metric_key(0.64, "cer") == "stream_0.64s_cer" and metric_key(2.0, "wer") == "stream_2s_wer"
    )
    with pytest.raises(ValueError, match=r"^downstream.finetune.stream_chunks: chunk sizes must"):
        chunk_frames(0.0, 0.02)
    with pytest.raises(ValueError, match=r"^downstream.finetune.stream_chunks: 0.03 s is shorter"):
        chunk_frames(0.03, 0.04)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "downstream:\n  finetune:\n    stream_chunks: [0.64, 0.0]\n",
            "downstream.finetune.stream_chunks.1: Input should be greater than 0",
        ),
        (
            "downstream:\n  finetune:\n    stream_chunks: [-0.5]\n",
            "downstream.finetune.stream_chunks.0: Input should be greater than 0",
        ),
        (
            "downstream:\n  finetune:\n    stream_chunks: [0.64, 0.01]\n",
            "downstream.finetune.stream_chunks.1: 0.01 s is shorter than one encoder frame "
            "(0.02 s with model.frontend.kind 'mel_cnn')",
        ),
        (
            "model:\n  frontend:\n    kind: conv2d\n"
            "downstream:\n  finetune:\n    stream_chunks: [0.03]\n",
            "downstream.finetune.stream_chunks.0: 0.03 s is shorter than one encoder frame "
            "(0.04 s with model.frontend.kind 'conv2d')",
        ),
        (
            "downstream:\n  finetune:\n    stream_chunks: [0.64, 0.64]\n",
            "downstream.finetune.stream_chunks: must not repeat a chunk size, got [0.64, 0.64]",
        ),
    ],
)
def test_bad_chunk_sizes_are_refused_naming_the_field(tmp_path: Path, body: str, message: str):
    path = tmp_path / "params.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}:")
    assert message in str(err.value)


def test_a_variant_whose_frames_are_longer_than_a_chunk_is_refused() -> None:
    params = Params.model_validate(
        {
            "downstream": {"finetune": {"stream_chunks": [0.02]}},
            "variants": {"coarse": {"frontend": {"kind": "conv2d"}}},
        }
    )
    with pytest.raises(ValueError, match=r"stream_chunks.0: 0.02 s is shorter than one encoder"):
        params.variant("coarse")


def test_only_streamable_mixers_stream() -> None:
    assert unstreamable_mixer(tiny_model("summarymixing").encoder) is None
    assert unstreamable_mixer(tiny_model("mhsa").encoder) is None
    params = Params.model_validate(
        {"model": {**MODEL, "mixer": {**MIXERS["summarymixing"], "mode": "expdecay"}}}
    )
    assert unstreamable_mixer(build_ctc_model(params, 5).encoder) == (
        "the mixer SummaryMixing of encoder layer 0 has no streaming mode"
    )


def small_data(corpus_root: Path):
    data = load_task_data(corpus_root / "synth", "asr")
    return dataclasses.replace(data, dev=data.dev[:3], test=data.test[:3])


def test_evaluate_reports_offline_and_streaming_scores(corpus_root: Path, tmp_path: Path, capsys):
    params = finetune_params(corpus_root, tmp_path, None, stream_chunks=[0.32, 1.28])
    data = small_data(corpus_root)
    torch.manual_seed(0)
    state = {"model": build_ctc_model(params, len(data.vocab)).state_dict()}
    scores = evaluate(state, params, data, "finetune@sm: random_init")
    keys = {"wer", "cer", "stream_0.32s_wer", "stream_0.32s_cer"}
    assert set(scores) == {"dev", "test"}
    for split in ("dev", "test"):
        assert set(scores[split]) == keys | {"stream_1.28s_wer", "stream_1.28s_cer"}
        assert all(isinstance(v, float) and v >= 0 for v in scores[split].values())
    assert capsys.readouterr().out == ""
    line = summary_line("finetune@sm: random_init", scores)
    dev, test = scores["dev"], scores["test"]
    assert line.endswith(
        f"; streaming CER dev/test: 0.32 s {dev['stream_0.32s_cer']:.4f}/"
        f"{test['stream_0.32s_cer']:.4f}, 1.28 s {dev['stream_1.28s_cer']:.4f}/"
        f"{test['stream_1.28s_cer']:.4f}"
    )


def test_evaluate_skips_streaming_for_a_mixer_that_cannot_stream(
    corpus_root: Path, tmp_path: Path, capsys
):
    data = small_data(corpus_root)
    base = finetune_params(corpus_root, tmp_path, None).model_dump(mode="json")
    base["model"]["mixer"] = {"kind": "fastformer", "heads": 4}
    params = Params.model_validate(base)
    torch.manual_seed(0)
    state = {"model": build_ctc_model(params, len(data.vocab)).state_dict()}
    scores = evaluate(state, params, data, "finetune@ff: pretrained")
    assert {split: set(values) for split, values in scores.items()} == {
        "dev": {"wer", "cer"},
        "test": {"wer", "cer"},
    }
    assert capsys.readouterr().out == (
        "finetune@ff: pretrained: streaming evaluation skipped: the mixer Fastformer of "
        "encoder layer 0 has no streaming mode\n"
    )
    assert "streaming" not in summary_line("finetune@ff: pretrained", scores)
