"""Probe trainings as jobs: the same result in a process pool as in the calling process."""

from __future__ import annotations

import pytest
import torch

from smx.config import DownstreamCfg
from smx.downstream import jobs as jobs_module
from smx.downstream.fit import Example
from smx.downstream.jobs import Job, JobResult, Split, run_jobs, train_job


def toy_split(frames: int, seed: int) -> Split:
    """Two classes told apart by the sign of the first feature of every frame; 2 layers."""
    g = torch.Generator().manual_seed(seed)

    def example(i: int) -> Example:
        label = i % 2
        states = torch.randn(frames, 2, 8, generator=g) * 0.1
        states[:, :, 0] += 1.0 if label else -1.0
        return Example(f"u{seed}-{i}", frames / 100, states, label)

    return Split(
        [example(i) for i in range(24)],
        [example(i) for i in range(24, 32)],
        [example(i) for i in range(32, 40)],
    )


CFG = DownstreamCfg(epochs=3, probe_dim=8, seeds=2, lr=1e-2, max_batch_duration=0.5)


def jobs() -> list[Job]:
    return [
        Job("style", probe, upstream, seed, num_layers=2, dim=8, outputs=2)
        for upstream in ("short", "long")
        for probe in ("linear", "ecapa")
        for seed in (0, 1)
    ]


def test_a_pool_gives_what_the_calling_process_gives_in_the_order_of_the_jobs() -> None:
    splits = {"short": toy_split(6, seed=0), "long": toy_split(20, seed=1)}
    seen: list[tuple[Job, int]] = []

    def done(result: JobResult, count: int) -> None:
        seen.append((result.job, count))

    here = run_jobs(jobs(), splits, CFG, workers=1)
    pooled = run_jobs(jobs(), splits, CFG, workers=2, done=done)

    assert [r.job for r in pooled] == jobs()
    # every job reported once, counting up
    assert sorted(seen, key=lambda s: s[1]) == seen
    assert [count for _, count in seen] == list(range(1, 9))
    assert sorted(jobs(), key=str) == sorted((job for job, _ in seen), key=str)
    for a, b in zip(here, pooled, strict=True):
        assert a.best_epoch == b.best_epoch
        assert torch.allclose(torch.tensor(a.layer_weights), torch.tensor(b.layer_weights))
        assert abs(sum(b.layer_weights) - 1) < 1e-6
        assert a.outputs.keys() == b.outputs.keys() == {e.id for e in splits[a.job.upstream].test}
        for key in a.outputs:
            assert torch.allclose(a.outputs[key], b.outputs[key], atol=1e-4)
    # the linear probe learns the toy task: the test outputs pick the right class
    linear = [r for r in pooled if r.job.probe == "linear"]
    for r in linear:
        test = {e.id: e.target for e in splits[r.job.upstream].test}
        right = sum(int(r.outputs[k].argmax()) == test[k] for k in test)
        assert right == len(test)


def test_seeds_give_different_probes_and_one_seed_gives_the_same_probe() -> None:
    splits = {"short": toy_split(6, seed=0)}
    job = Job("style", "linear", "short", 0, num_layers=2, dim=8, outputs=2)
    other = Job("style", "linear", "short", 1, num_layers=2, dim=8, outputs=2)
    a, b, c = run_jobs([job, job, other], splits, CFG, workers=1)
    assert a.layer_weights == b.layer_weights
    assert a.layer_weights != c.layer_weights


def test_a_failing_job_in_the_pool_raises_its_error_in_the_caller() -> None:
    splits = {"short": toy_split(6, seed=0)}
    good = Job("style", "linear", "short", 0, num_layers=2, dim=8, outputs=2)
    bad = Job("style", "no_such_probe", "short", 0, num_layers=2, dim=8, outputs=2)
    with pytest.raises(ValueError, match="no_such_probe"):
        run_jobs([good, bad, good], splits, CFG, workers=2)


def test_probe_epochs_set_the_training_length_of_the_named_probe_only() -> None:
    splits = {"short": toy_split(6, seed=0), "long": toy_split(20, seed=1)}
    cfg = CFG.model_copy(update={"epochs": 1, "probe_epochs": {"linear": 6}})
    results = run_jobs(jobs(), splits, cfg, workers=1)
    # one epoch: the only one is the best; six: the toy task keeps improving after the first
    assert all(r.best_epoch == 0 for r in results if r.job.probe == "ecapa")
    assert all(r.best_epoch >= 1 for r in results if r.job.probe == "linear")


def test_probe_lr_sets_the_learning_rate_of_the_named_probe_only() -> None:
    split = toy_split(6, seed=0)
    linear = Job("style", "linear", "short", 0, num_layers=2, dim=8, outputs=2)
    ecapa = Job("style", "ecapa", "short", 0, num_layers=2, dim=8, outputs=2)
    own = CFG.model_copy(update={"probe_lr": {"linear": 1e-3}})
    slow = CFG.model_copy(update={"lr": 1e-3})

    def outputs(job: Job, cfg: DownstreamCfg) -> torch.Tensor:
        result = train_job(job, split, cfg)
        return torch.stack([result.outputs[key] for key in sorted(result.outputs)])

    # the linear probe trains as with lr 1e-3 everywhere, ECAPA as with the shared 1e-2
    assert torch.equal(outputs(linear, own), outputs(linear, slow))
    assert not torch.equal(outputs(linear, own), outputs(linear, CFG))
    assert torch.equal(outputs(ecapa, own), outputs(ecapa, CFG))


def test_the_linear_probe_trained_on_averages_gives_what_it_gives_on_every_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    split = toy_split(20, seed=3)
    job = Job("intent", "linear", "toy", 0, num_layers=2, dim=8, outputs=2)
    fast = train_job(job, split, CFG)
    monkeypatch.setattr(jobs_module, "AVERAGE_FIRST", frozenset())
    slow = train_job(job, split, CFG)
    assert fast.best_epoch == slow.best_epoch
    assert torch.allclose(torch.tensor(fast.layer_weights), torch.tensor(slow.layer_weights))
    for key, out in slow.outputs.items():
        assert torch.allclose(fast.outputs[key], out, atol=1e-5)


def test_spawned_workers_where_fork_is_not_the_default_give_the_same_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import multiprocessing

    assert jobs_module._pool_context().get_start_method() == "fork"  # Linux: forked workers
    monkeypatch.setattr(jobs_module, "_pool_context", lambda: multiprocessing.get_context("spawn"))
    splits = {"short": toy_split(6, seed=0)}
    some = [j for j in jobs() if j.upstream == "short"]
    here = run_jobs(some, splits, CFG, workers=1)
    spawned = run_jobs(some, splits, CFG, workers=2)
    for a, b in zip(here, spawned, strict=True):
        assert a.job == b.job and a.best_epoch == b.best_epoch
        for key in a.outputs:
            torch.testing.assert_close(a.outputs[key], b.outputs[key], atol=1e-4, rtol=1e-4)
