"""The CTC fine-tuning model without Ray: SpecAugment, freezing, the head, the encoder file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from finetune_helpers import finetune_params
from lhotse import CutSet
from tiny import write_encoder

from smx.data.loader import collate
from smx.data.manifests import load_cuts
from smx.downstream.ctc import (
    SpecAugment,
    build_ctc_model,
    encode_texts,
    error_rates,
    load_encoder,
)
from smx.downstream.errors import ProbeError
from smx.downstream.tasks import load_task_data
from smx.train.finetune_loop import finetune_schedule, finetune_settings


def test_specaugment_masks_in_training_only() -> None:
    aug = SpecAugment(freq_masks=2, freq_width=10, time_masks=4, time_width=30, time_fraction=0.2)
    x = torch.rand(4, 200, 80) + 1.0  # never 0, so zeros are masks
    torch.manual_seed(0)
    assert torch.equal(aug.eval()(x), x)
    y = aug.train()(x)
    zero = y == 0  # [B, T, F]
    bins = zero.all(dim=1)  # [B, F]: whole frequency bands
    frames = zero.all(dim=2)  # [B, T]: whole time spans
    assert bins.any() and frames.any()
    assert int(bins.sum(1).max()) <= 2 * 10  # at most 2 bands of 10 bins per utterance
    assert int(frames.sum(1).max()) <= 0.2 * 200  # at most 20 % of the frames in all
    assert not torch.equal(zero[0], zero[1])  # each utterance draws its own masks
    kept = ~(bins[:, None, :] | frames[:, :, None])
    assert torch.equal(y[kept], x[kept])  # everything else untouched


def test_encoder_is_frozen_up_to_freeze_steps_then_trains(
    corpus_root: Path, tmp_path: Path
) -> None:
    params = finetune_params(corpus_root, tmp_path, None, freeze_steps=2, specaugment=False)
    data = load_task_data(corpus_root / "synth", "asr")
    torch.manual_seed(0)
    model = build_ctc_model(params, len(data.vocab)).train()
    cuts = CutSet.from_cuts(item.cut for item in data.train[:3])
    batch = collate(cuts)
    targets, target_lens = encode_texts(batch["text"], data.vocab)
    inputs = {"audio": batch["audio"], "audio_lens": batch["audio_lens"], "targets": targets,
              "target_lens": target_lens}  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)

    def snapshot() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        enc = {k: v.clone() for k, v in model.encoder_state().items()}
        head = {k: v.clone() for k, v in model.head.state_dict().items()}
        return enc, head

    enc0, head0 = snapshot()
    changed = []
    for step in (1, 2, 3):
        model.set_step(step)
        out = model(inputs)
        assert out.metrics["frozen"] == (1.0 if step <= 2 else 0.0)
        out.loss.backward()
        encoder_grads = [p.grad for n, p in model.named_parameters() if not n.startswith("head.")]
        assert all(g is None for g in encoder_grads) == (step <= 2), step
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        enc, head = snapshot()
        same = all(torch.equal(enc[k], enc0[k]) for k in enc0)
        changed.append(not same)
        assert not torch.equal(head["weight"], head0["weight"])  # the head learns from step 1
        head0 = head
    assert changed == [False, False, True]  # bit-identical for 2 steps, updated at step 3


def test_the_head_covers_the_corpus_vocabulary(corpus_root: Path, tmp_path: Path) -> None:
    params = finetune_params(corpus_root, tmp_path, None)
    vocab = load_task_data(corpus_root / "synth", "asr").vocab
    model = build_ctc_model(params, len(vocab))
    assert vocab.tokens[0] == "<blank>" and len(vocab) == len(vocab.chars) + 2
    assert model.head.out_features == len(vocab)
    assert model.head.in_features == params.model.encoder.d_model
    targets, lens = encode_texts(["a b", "ab"], vocab)
    assert lens.tolist() == [3, 2] and 0 not in targets[0].tolist()  # blank is never a target
    assert vocab.decode(targets[0].tolist()) == "a b"


def test_encoder_file_loads_into_the_model_and_another_architecture_is_refused(
    corpus_root: Path, tmp_path: Path
) -> None:
    params = finetune_params(corpus_root, tmp_path, None)
    path = write_encoder(params, tmp_path / "encoder.pt")
    saved = torch.load(path, weights_only=True)["state_dict"]
    torch.manual_seed(0)
    random = build_ctc_model(params, 30)
    torch.manual_seed(0)
    model = load_encoder(build_ctc_model(params, 30), path, params)
    assert torch.equal(model.encoder.input_proj.weight, saved["encoder.input_proj.weight"])
    assert torch.equal(model.head.weight, random.head.weight)  # same seed, same head
    assert not torch.equal(model.encoder.input_proj.weight, random.encoder.input_proj.weight)

    other = finetune_params(corpus_root, tmp_path, None)
    data = other.model_dump(mode="json")
    data["model"]["encoder"]["num_layers"] = 3
    deeper = type(other).model_validate(data)
    with pytest.raises(ProbeError, match=r"does not match the architecture of the given config"):
        load_encoder(build_ctc_model(deeper, 30), path, deeper)


def test_untrained_model_scores_are_error_rates(corpus_root: Path, tmp_path: Path) -> None:
    params = finetune_params(corpus_root, tmp_path, None)
    data = load_task_data(corpus_root / "synth", "asr")
    model = build_ctc_model(params, len(data.vocab))
    scores = error_rates(model, data.dev[:4], data.vocab, max_batch_duration=20.0)
    assert set(scores) == {"wer", "cer"} and scores["cer"] > 0.5  # random weights: mostly wrong
    assert len(list(load_cuts(corpus_root / "synth", "dev"))) >= 4


def test_schedule_and_settings_come_from_downstream_finetune(
    corpus_root: Path, tmp_path: Path
) -> None:
    params = finetune_params(
        corpus_root, tmp_path, None, max_steps=20, lr=1.0, tristage=[0.1, 0.4, 0.5]
    )
    settings = finetune_settings(params)
    assert (settings.max_steps, settings.lr, settings.schedule) == (20, 1.0, "tristage")
    assert settings.grad_clip == params.train.grad_clip  # the rest follows `train`
    sched = finetune_schedule(params)
    # warm-up 2 steps from 0.01, hold until step 10, exponential decay to 0.05 at step 20
    assert [round(sched(n), 4) for n in (0, 1, 2, 10, 15, 20)] == [
        0.01, 0.505, 1.0, 1.0, round(0.05**0.5, 4), 0.05,
    ]  # fmt: skip
