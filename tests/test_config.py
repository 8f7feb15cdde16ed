"""The config schema: every shipped YAML validates; malformed configs name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from smx.config import FrontendCfg, Params, TrackingCfg, deep_merge, load
from smx.tracking import resolve_tracking_uri
from smx.yamlio import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    params = load(path)
    for name in params.variants:
        assert params.variant(name).variants == {}


def test_defaults_alone_are_valid() -> None:
    params = Params()
    assert params.model.mixer.kind == "summarymixing"
    assert params.ssl.kind == "wav2vec2"


# (yaml text, line, dotted path, fragment of the message)
MALFORMED = {
    "syntax_error": ("seed: 0\nmodel:\n  encoder:\n    d_model: [1\n", 5, "", "YAML syntax error"),
    "tab_indent": ("seed: 0\nmodel:\n\tencoder: {}\n", 3, "", "YAML syntax error"),
    "duplicate_key": ("seed: 1\nseed: 2\n", 2, "", "duplicate key"),
    "unknown_top_key": (
        "seed: 0\nepochs: 3\n",
        2,
        "epochs",
        "unknown key 'epochs'; allowed keys: seed, data",
    ),
    "unknown_nested_key": (
        "model:\n  mixer:\n    kind: mhsa\n    nheads: 8\n",
        4,
        "model.mixer.nheads",
        "allowed keys: kind, heads, dropout, pos",
    ),
    "wrong_type_int": (
        "model:\n  encoder:\n    d_model: '256'\n",
        3,
        "model.encoder.d_model",
        "valid integer",
    ),
    "wrong_type_bool": ("cluster:\n  use_gpu: 'yes'\n", 2, "cluster.use_gpu", "valid boolean"),
    "wrong_type_list": ("data:\n  synth:\n    snr_db: 10\n", 3, "data.synth.snr_db", "valid list"),
    "out_of_range": ("train:\n  lr: -0.1\n", 2, "train.lr", "greater than 0"),
    "probability_above_one": (
        "ssl:\n  kind: bestrq\n  mask_prob: 1.5\n",
        3,
        "ssl.mask_prob",
        "less than 1",
    ),
    "heads_do_not_divide": (
        "model:\n  encoder:\n    d_model: 100\n  mixer:\n    kind: mhsa\n    heads: 8\n",
        6,
        "model.mixer.heads",
        "8 does not divide encoder.d_model=100",
    ),
    "summary_hidden_vs_heads": (
        "model:\n  encoder:\n    d_model: 64\n  mixer:\n    kind: summarymixing\n    heads: 4\n"
        "    summary_hidden:\n    - 30\n",
        8,
        "model.mixer.summary_hidden.0",
        "30 is not divisible by heads=4",
    ),
    "unknown_mixer_kind": (
        "model:\n  mixer:\n    kind: transformerxl\n",
        3,
        "model.mixer.kind",
        "unknown kind",
    ),
    "missing_mixer_kind": ("model:\n  mixer:\n    heads: 4\n", 2, "model.mixer", "missing 'kind'"),
    "unknown_ssl_kind": (
        "ssl:\n  kind: hubert\n",
        2,
        "ssl.kind",
        "expected one of 'wav2vec2', 'bestrq'",
    ),
    "mask_span_too_long": (
        "data:\n  min_duration: 0.2\nssl:\n  kind: wav2vec2\n  mask_length: 10\n",
        5,
        "ssl.mask_length",
        "not shorter than the shortest utterance",
    ),
    "bestrq_stack_vs_subsampling": (
        "model:\n  frontend:\n    kind: conv2d\nssl:\n  kind: bestrq\n  stack_frames: 2\n",
        6,
        "ssl.stack_frames",
        "time subsampling (4)",
    ),
    "min_above_max_duration": (
        "data:\n  min_duration: 30.0\n  max_duration: 20.0\n",
        2,
        "data.min_duration",
        "must be smaller than max_duration",
    ),
    "even_kernel": (
        "model:\n  encoder:\n    kernel_size: 30\n",
        3,
        "model.encoder.kernel_size",
        "must be odd",
    ),
    "fast_mode_with_heads": (
        "model:\n  mixer:\n    kind: summarymixing\n    mode: fast\n    heads: 4\n",
        5,
        "model.mixer.heads",
        "set heads: 1",
    ),
    "lite_outside_branchformer": (
        "model:\n  mixer:\n    kind: summarymixing\n    mode: lite\n",
        4,
        "model.mixer.mode",
        "needs encoder.block 'branchformer'",
    ),
    "streaming_with_mamba": (
        "model:\n  mixer:\n    kind: mamba\n  streaming:\n    enabled: true\n",
        5,
        "model.streaming.enabled",
        "streaming mode",
    ),
    "probe_epochs_of_an_unknown_probe": (
        "downstream:\n  probe_epochs:\n    lineer: 30\n",
        3,
        "downstream.probe_epochs",
        "linear",
    ),
    "probe_lr_of_an_unknown_probe": (
        "downstream:\n  probe_lr:\n    x_vector: 1.0e-3\n",
        3,
        "downstream.probe_lr",
        "xvector",
    ),
    "probe_lr_not_positive": (
        "downstream:\n  probe_lr:\n    xvector: 0\n",
        3,
        "downstream.probe_lr.xvector",
        "greater than 0",
    ),
    "gpu_without_gpus": ("cluster:\n  use_gpu: true\n", 2, "cluster", "gpus_per_worker"),
    "file_tracking_store": ("tracking:\n  uri: ./mlruns\n", 2, "tracking.uri", "file store"),
    "warmup_longer_than_training": (
        "train:\n  max_steps: 10\n  warmup_steps: 20\n",
        3,
        "train.warmup_steps",
        "exceeds max_steps=10",
    ),
    "bad_variant": (
        "model:\n  encoder:\n    d_model: 64\n"
        "variants:\n  mhsa:\n    mixer:\n      kind: mhsa\n      heads: 5\n",
        8,
        "variants.mhsa.mixer.heads",
        "5 does not divide encoder.d_model=64",
    ),
    "bad_variant_name": (
        "variants:\n  Big-Model:\n    mixer:\n      kind: mhsa\n",
        2,
        "variants.Big-Model",
        "lower-case",
    ),
    "top_level_list": ("- a\n- b\n", 1, "", "top level must be a mapping"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_config_names_file_line_and_field(case: str, tmp_path: Path) -> None:
    text, line, path, fragment = MALFORMED[case]
    file = tmp_path / f"{case}.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(file)
    issue = info.value.issues[0]
    assert issue.file == str(file)
    assert issue.line == line, str(issue)
    if path:
        assert issue.path.startswith(path), str(issue)
    assert fragment in issue.message or fragment in issue.path, str(issue)
    assert str(issue).startswith(f"{file}:{line}: ")


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    file = tmp_path / "many.yaml"
    file.write_text("seed: -1\ntrain:\n  lr: 0\n  foo: 1\n")
    with pytest.raises(ConfigError) as info:
        load(file)
    paths = sorted(i.path for i in info.value.issues)
    assert paths == ["seed", "train.foo", "train.lr"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "nope.yaml")


def test_yaml12_exponent_is_a_float(tmp_path: Path) -> None:
    file = tmp_path / "lr.yaml"
    file.write_text("train:\n  lr: 1e-3\n")
    assert load(file).train.lr == pytest.approx(1e-3)


def test_configs_are_immutable() -> None:
    params = Params()
    with pytest.raises(ValidationError):
        params.train.lr = 1.0  # type: ignore[misc]


def test_variant_patches_model_and_switching_kind_takes_its_defaults() -> None:
    params = Params.model_validate(
        {
            "model": {"encoder": {"d_model": 64}, "mixer": {"kind": "summarymixing", "heads": 4}},
            "variants": {
                "mhsa": {"mixer": {"kind": "mhsa", "heads": 2}},
                "sm": {"encoder": {"num_layers": 2}},
            },
        }
    )
    mhsa = params.variant("mhsa")
    assert mhsa.model.mixer.kind == "mhsa" and mhsa.model.mixer.heads == 2
    assert mhsa.model.encoder.d_model == 64
    sm = params.variant("sm")
    assert sm.model.encoder.num_layers == 2 and sm.model.mixer.heads == 4
    with pytest.raises(KeyError, match="variant 'x' is not defined"):
        params.variant("x")


def test_invalid_variant_is_rejected_without_a_file() -> None:
    with pytest.raises(ValidationError, match=r"variants\.bad"):
        Params.model_validate(
            {
                "model": {
                    "encoder": {"d_model": 64},
                    "mixer": {"kind": "summarymixing", "heads": 4},
                },
                "variants": {"bad": {"mixer": {"kind": "mhsa", "heads": 5}}},
            }
        )


def test_deep_merge_keeps_base_and_replaces_union_members() -> None:
    base = {
        "mixer": {"kind": "summarymixing", "heads": 4},
        "encoder": {"d_model": 64, "num_layers": 4},
    }
    merged = deep_merge(base, {"mixer": {"kind": "mhsa"}, "encoder": {"num_layers": 2}})
    assert merged == {"mixer": {"kind": "mhsa"}, "encoder": {"d_model": 64, "num_layers": 2}}
    assert base["encoder"]["num_layers"] == 4  # the base is not modified


def test_frame_arithmetic_matches_hand_computed_counts() -> None:
    mel_cnn = FrontendCfg()
    frames = mel_cnn.feature_frames(160_000, 16_000)  # 10 s
    assert frames == 1001
    assert mel_cnn.encoder_frames(frames) == 498  # (1001 - 3) // 2 + 1 = 500, then 500 - 2
    assert mel_cnn.subsampling == 2
    conv2d = FrontendCfg(kind="conv2d")
    assert conv2d.encoder_frames(1001) == 251 and conv2d.subsampling == 4


def test_tracking_uri_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(TrackingCfg(), tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(TrackingCfg(), tmp_path) == "http://127.0.0.1:5000"
    assert (
        resolve_tracking_uri(TrackingCfg(uri="sqlite:////abs/x.db"), tmp_path)
        == "sqlite:////abs/x.db"
    )


def test_probe_names_of_probe_epochs_are_the_probes_of_the_tasks() -> None:
    from typing import get_args

    from smx.config import PROBES, ProbeName

    assert set(get_args(ProbeName)) == {name for names in PROBES.values() for name in names}
