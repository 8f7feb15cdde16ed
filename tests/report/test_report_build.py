"""The report: tables hold the numbers, sentences say the right thing, figures are PNGs,
missing and malformed inputs name the file and the stage."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from report_helpers import IMPORT_SOURCE, STAGE_SECONDS, write_import, write_inputs, write_params

from smx.config import load
from smx.docblock import BlockError
from smx.report.analysis import cost_ratios, findings, finetune_sentence, verdict
from smx.report.build import file_sha256, variant_metrics, write_report
from smx.report.documents import FIGURE, Documents, publish
from smx.report.figures import FIGURES, pretrain_cost, pretrain_loss
from smx.report.inputs import ReportError, Spread, gather, read_bench
from smx.report.markdown import Provenance, limits, pretrain_table

PROJECT = Path(__file__).resolve().parents[2]
PROVENANCE = Provenance("0123abc", "f" * 64)


# the better probe of each upstream (report_helpers.PROBE_SCORES): asr's bilstm everywhere;
# speaker's xvector, within the spread of random init for summarymixing, worse for mhsa
ASR_ROW = (
    "| asr (wer, lower is better) | **0.600 ± 0.020** / 0.900 ± 0.010 / 0.800 ± 0.020 "
    "| **0.700 ± 0.020** / 0.900 ± 0.010 / 0.800 ± 0.020 |"
)
SPEAKER_ROW = (
    "| speaker (eer, lower is better) | 0.200 ± 0.050 / 0.220 ± 0.040 / 0.300 ± 0.010 "
    "| 0.350 ± 0.010 / 0.220 ± 0.040 / 0.300 ± 0.010 |"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Inputs, params and the written report in one folder (drawn once: ~5 s of matplotlib)."""
    root = tmp_path_factory.mktemp("study")
    write_inputs(root)
    params = load(write_params(root, f"sqlite:///{root}/mlflow.db"))
    write_report(gather(root, params), params, root / "reports", PROVENANCE)
    return root, (root / "reports" / "report.md").read_text()


def test_header_and_tables_hold_the_numbers(built: tuple[Path, str]) -> None:
    _, text = built
    assert "- git commit: `0123abc`" in text
    assert (
        "- `summarymixing`: `models:/smx-summarymixing/3`\n- `mhsa`: `models:/smx-mhsa/3`" in text
    )
    assert f"- dvc.lock sha256: `{'f' * 64}`" in text
    # median step times 0.8 s / 1.0 s -> 0.80x; peak memory 900 / 1000 MB -> 0.90x
    assert (
        "| summarymixing | summarymixing | 50 | 1.389 | 6.000 | 4.000 | 0.500 | 0.800 | 0.80x | 900 | 0.90x | 125.0 |"
        in text
    )
    assert (
        "| mhsa | mhsa | 50 | 1.389 | 6.000 | 4.000 | 0.500 | 1.000 | 1.00x | 1000 | 1.00x | 125.0 |"
        in text
    )
    assert "### speaker: eer (lower is better)" in text
    assert "| xvector | pretrained | 0.200 ± 0.050 | 0.350 ± 0.010 |" in text
    assert "| bilstm_linear | random init | 0.550 ± 0.020 | 0.550 ± 0.020 |" in text
    # fine-tuning: test CER streamed in 0.64 s and 1.28 s chunks (report_helpers.STREAM_CER_GAP)
    assert (
        "| variant | init | dev WER | dev CER | test WER | test CER | test CER, 0.64 s chunks "
        "| test CER, 1.28 s chunks | updates (encoder frozen) | train s |" in text
    )
    assert (
        "| summarymixing | pretrained | 0.500 | 0.250 | 0.550 | 0.275 | 0.325 | 0.295 | 40 (10) "
        "| 62 |" in text
    )
    assert (
        "| mhsa | random init | 0.910 | 0.455 | 0.960 | 0.480 | 0.530 | – | 40 (10) | 62 |" in text
    )
    # bench at 80 s: 6 s / 10 s and 500 / 1000 MiB; the skipped Mamba point says why
    assert (
        "| wav2vec2 | summarymixing | 80 | 2000 | 6.00 | 6.00 | 500 | 0.60x | 0.60x | 0.50x |"
        in text
    )
    assert "| wav2vec2 | mamba | 80 | 2000 | projected 200 s per step exceeds" in text
    assert (
        "probes 32 wide trained for 5 epochs (linear: 9) at learning rate 0.0002 over 2 seeds"
    ) in " ".join(text.split())


def test_generated_sentences_follow_the_numbers(built: tuple[Path, str]) -> None:
    _, text = built
    assert (
        "- summarymixing's pre-training step took 0.80x mhsa's time and 0.90x its peak memory"
    ) in text
    assert (
        "- the pre-trained summarymixing encoder beat random init on 3/4 tasks "
        "(not on speaker: within the spread) and fbank features on 4/4 tasks." in text
    )
    assert (
        "- the pre-trained mhsa encoder beat random init on 3/4 tasks (not on speaker: worse)"
    ) in text
    assert "mhsa 0.700 ± 0.020 (bilstm): summarymixing wins." in text  # 0.60 vs 0.70, std 0.02
    assert "(linear): summarymixing leads mhsa within the spread." in text  # 0.85 vs 0.83 ± 0.03
    assert "summarymixing 0.700 ± 0.010 (linear): mhsa wins." in text  # style 0.74 vs 0.70
    assert "summarymixing 0.60x the time and 0.50x the memory" in text
    assert "summarymixing 0.550 vs 0.950 (lower from pre-training)" in text
    assert "lowest after pre-training: summarymixing." in text
    assert "18 % less time and 23 % less peak VRAM" in text  # the published scale
    assert "in 50 updates" in text


def test_figures_are_linked_and_valid_pngs(built: tuple[Path, str]) -> None:
    import matplotlib.image

    root, text = built
    for name in FIGURES:
        assert f"](figures/{name})" in text
        data = (root / "reports" / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width > 300 and height > 200
        image = matplotlib.image.imread(root / "reports" / "figures" / name)
        assert image.shape[:2] == (height, width)
    assert not list((root / "reports").rglob("*.tmp"))  # atomic writes left nothing behind


def test_the_best_probe_table_sums_up_the_findings(built: tuple[Path, str]) -> None:
    _, text = built
    findings = text[text.index("## What the numbers show") : text.index("## Pre-training")]
    assert "| task (metric) | summarymixing | mhsa |" in findings
    assert ASR_ROW in findings
    assert SPEAKER_ROW in findings
    assert "mean ± std over 2 seeds" in findings
    assert "![Each task's better probe" in text


def test_each_task_says_whether_fbank_beat_chance(built: tuple[Path, str]) -> None:
    _, text = built
    findings = text[text.index("## What the numbers show") : text.index("## Pre-training")]
    assert "| task (metric) | summarymixing | mhsa | learnable here |" in findings
    rows = {line.split(" (", 1)[0][2:]: line for line in findings.splitlines() if "±" in line}
    # the better fbank probe against each task's chance level (report_helpers.CHANCE)
    assert rows["asr"].endswith("| yes (fbank 0.800 ± 0.020, chance 1.000) |")
    assert rows["speaker"].endswith("| yes (fbank 0.300 ± 0.010, chance 0.500) |")
    assert rows["intent"].endswith("| no (fbank 0.450 ± 0.020, chance 0.450) |")
    assert rows["style"].endswith("| not recorded |")  # a result written without `chance`


def test_the_time_table_sums_the_recorded_stages_by_part(built: tuple[Path, str]) -> None:
    _, text = built
    section = text[text.index("## Where the time went") :]
    total = sum(STAGE_SECONDS.values())  # 10 + 210 + 60 + 4 x 20 + 8 x 10 = 440
    assert "| prepare (the corpus) | 10 | 2% |" in section
    assert "| configs | – | – |" in section  # no stage of it recorded a time
    assert "| pre-training summarymixing | 110 | 25% |" in section
    assert "| probes speaker (fbank, then each variant) | 40 | 9% |" in section
    assert "| benchmark | – | – |" in section
    assert f"| **total** | **{total:.0f}** (7.3 min) | 100% |" in section


def _documents(root: Path) -> Documents:
    """A README and a results page, each with its blocks between hand-written lines."""
    documents = Documents.under(root / "project")
    documents.results.parent.mkdir(parents=True)
    for path, names in (
        (documents.readme, ["demo"]),
        (documents.results, ["demo-probes", "demo-time"]),
    ):
        blocks = "".join(
            f"<!-- begin: {name} -->\nold numbers\n<!-- end: {name} -->\n\n" for name in names
        )
        path.write_text(f"# Title\n\nhand-written\n\n{blocks}kept as written\n")
    return documents


def test_the_documents_blocks_are_rewritten_and_the_rest_kept(
    built: tuple[Path, str], tmp_path: Path
) -> None:
    root, _ = built
    study = gather(root, load(root / "params.yaml"))
    figure = root / "reports" / "figures" / FIGURE
    documents = _documents(tmp_path)

    published = publish(study, figure, documents)

    copy = documents.figures / FIGURE
    assert published.written == [documents.readme, documents.results, copy]
    assert published.absent == []
    assert copy.read_bytes() == figure.read_bytes()
    readme, results = documents.readme.read_text(), documents.results.read_text()
    assert "| **total** | **440** (7.3 min) | 100% |" in results  # block demo-time
    for text in (readme, results):
        assert text.startswith("# Title\n\nhand-written\n\n<!-- begin: ")
        assert text.endswith(" -->\n\nkept as written\n")
        assert "old numbers" not in text
        assert ASR_ROW in text and SPEAKER_ROW in text
        # where each encoder is registered: its newest version, whatever the local store's
        # version numbers (reports/report.md names the exact version)
        assert "- `mhsa`: `models:/smx-mhsa@latest`" in text and "smx-mhsa/3" not in text
    assert "](docs/figures/best_probes.png)" in readme
    assert "](figures/best_probes.png)" in results
    assert "- the pre-trained summarymixing encoder beat random init on 3/4 tasks" not in readme
    assert (
        "- the pre-trained summarymixing encoder beat random init on 3/4 tasks "
        "(not on speaker: within the spread) and fbank features on 4/4 tasks." in results
    )
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_document_without_its_markers_is_named_and_left_untouched(
    built: tuple[Path, str], tmp_path: Path
) -> None:
    root, _ = built
    study = gather(root, load(root / "params.yaml"))
    documents = _documents(tmp_path)
    documents.readme.write_text("# Title\n\nno block here\n")

    with pytest.raises(BlockError) as err:
        publish(study, root / "reports" / "figures" / FIGURE, documents)

    assert str(err.value) == (
        f"{documents.readme} has no block `demo`: add the lines `<!-- begin: demo -->` and "
        "`<!-- end: demo -->` where it belongs"
    )
    assert documents.readme.read_text() == "# Title\n\nno block here\n"


def test_absent_documents_are_skipped(built: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = built
    study = gather(root, load(root / "params.yaml"))
    documents = Documents.under(tmp_path)

    published = publish(study, root / "reports" / "figures" / FIGURE, documents)

    assert published.written == []
    assert published.absent == [documents.readme, documents.results]
    assert not documents.figures.exists()


def test_summary_json_has_the_same_names_for_every_variant(built: tuple[Path, str]) -> None:
    root, _ = built
    summary = json.loads((root / "reports" / "summary.json").read_text())
    sm, mhsa = summary["variants"]["summarymixing"], summary["variants"]["mhsa"]
    assert sorted(sm) == sorted(mhsa)
    assert sm["pretrain.step_time_s"] == pytest.approx(0.8)
    assert mhsa["probe.speaker.xvector.pretrained.eer"] == pytest.approx(0.35)
    assert sm["probe.intent.bilstm_linear.pretrained.accuracy_std"] == pytest.approx(0.03)
    assert sm["finetune.random_init.test.wer"] == pytest.approx(0.95)
    assert summary["dvc_lock_sha256"] == "f" * 64


def test_verdict_uses_the_larger_std() -> None:
    assert verdict(Spread(0.20, 0.05), Spread(0.22, 0.04), "lower") == "within"
    assert verdict(Spread(0.20, 0.01), Spread(0.22, 0.01), "lower") == "better"
    assert verdict(Spread(0.80, 0.0), Spread(0.80, 0.0), "higher") == "within"
    assert verdict(Spread(0.70, 0.01), Spread(0.74, 0.01), "higher") == "worse"


def test_dvc_lock_hash() -> None:
    import hashlib

    lock = PROJECT / "dvc.lock"
    assert file_sha256(lock) == hashlib.sha256(lock.read_bytes()).hexdigest()


def test_the_real_bench_output_of_the_docs_is_read(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "bench" / "pretrain.json"
    target.parent.mkdir(parents=True)
    shutil.copy(PROJECT / "docs" / "bench" / "pretrain.json", target)
    bench = read_bench(tmp_path)
    assert {r["objective"] for r in bench.records} == {"wav2vec2", "bestrq"}
    assert bench.threads == 1


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, object]:
    write_inputs(tmp_path)
    return tmp_path, load(write_params(tmp_path, f"sqlite:///{tmp_path}/mlflow.db"))


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        ("metrics/pretrain/mhsa.json", "pretrain@mhsa"),
        ("plots/pretrain/summarymixing.csv", "pretrain@summarymixing"),
        ("metrics/probe/mhsa/asr.json", "probe@mhsa-asr"),
        ("metrics/finetune/summarymixing.json", "finetune@summarymixing"),
        ("reports/bench/pretrain.json", "bench"),
    ],
)
def test_a_missing_input_names_the_file_and_the_stage(
    inputs: tuple[Path, object], path: str, stage: str
) -> None:
    root, params = inputs
    (root / path).unlink()
    with pytest.raises(ReportError) as err:
        gather(root, params)
    assert str(err.value) == f"{path} is missing; run `dvc repro {stage}`"


def _edit(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_malformed_inputs_name_the_file_and_the_key(inputs: tuple[Path, object]) -> None:
    root, params = inputs
    probe = root / "metrics/probe/summarymixing/speaker.json"
    _edit(probe, lambda d: d["probes"]["ecapa"]["fbank"]["metrics"]["eer"].pop("std"))
    with pytest.raises(ReportError) as err:
        gather(root, params)
    assert str(err.value) == (
        "metrics/probe/summarymixing/speaker.json: probes.ecapa.fbank.metrics.eer.std is "
        "missing; re-run `dvc repro probe@summarymixing-speaker`"
    )
    probe.write_text('{"task": "speaker",')
    with pytest.raises(
        ReportError, match=r"^metrics/probe/summarymixing/speaker.json is not valid JSON"
    ):
        gather(root, params)
    write_inputs(root)
    _edit(
        root / "metrics/finetune/mhsa.json",
        lambda d: d["inits"]["random_init"]["test"].update(wer="n/a"),
    )
    with pytest.raises(ReportError) as err:
        gather(root, params)
    assert str(err.value) == (
        "metrics/finetune/mhsa.json: inits.random_init.test.wer is 'n/a', expected a number; "
        "re-run `dvc repro finetune@mhsa`"
    )
    write_inputs(root)
    _edit(
        root / "metrics/finetune/mhsa.json",
        lambda d: d["inits"]["pretrained"]["dev"].update({"stream_0.64s_cer": None}),
    )
    with pytest.raises(ReportError) as err:
        gather(root, params)
    assert str(err.value) == (
        "metrics/finetune/mhsa.json: inits.pretrained.dev.stream_0.64s_cer is None, expected a "
        "number; re-run `dvc repro finetune@mhsa`"
    )
    write_inputs(root)
    _edit(root / "reports/bench/pretrain.json", lambda d: d["records"][1].pop("peak_mem_bytes"))
    with pytest.raises(
        ReportError, match=r"^reports/bench/pretrain.json: records\[1\].peak_mem_bytes "
    ):
        gather(root, params)
    write_inputs(root)
    curve = root / "plots/pretrain/mhsa.csv"
    curve.write_text(curve.read_text().replace("step_time", "seconds"))
    with pytest.raises(ReportError) as err:
        gather(root, params)
    assert str(err.value) == (
        "plots/pretrain/mhsa.csv: column 'step_time' is missing; re-run `dvc repro pretrain@mhsa`"
    )


def test_equal_scores_are_called_a_tie_not_a_lead(tmp_path: Path) -> None:
    from smx.report.analysis import task_winner

    write_inputs(tmp_path)
    params = load(write_params(tmp_path, f"sqlite:///{tmp_path}/mlflow.db"))
    # both variants' intent results and pre-trained fine-tuning WER made identical
    sm_intent = tmp_path / "metrics" / "probe" / "summarymixing" / "intent.json"
    mhsa_intent = json.loads(sm_intent.read_text()) | {"variant": "mhsa"}
    (tmp_path / "metrics" / "probe" / "mhsa" / "intent.json").write_text(json.dumps(mhsa_intent))
    for variant in ("summarymixing", "mhsa"):
        path = tmp_path / "metrics" / "finetune" / f"{variant}.json"
        data = json.loads(path.read_text())
        data["inits"]["pretrained"]["test"]["wer"] = 1.0
        path.write_text(json.dumps(data))
    study = gather(tmp_path, params)
    assert task_winner(study, "intent").endswith(": summarymixing and mhsa tie")
    assert finetune_sentence(study).endswith("; no single lowest after pre-training")


def test_fine_tuning_is_stated_on_the_studys_asr_metric(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    params = load(write_params(tmp_path, f"sqlite:///{tmp_path}/mlflow.db"))
    params = params.model_copy(
        update={"downstream": params.downstream.model_copy(update={"asr_metric": "cer"})}
    )
    sentence = finetune_sentence(gather(tmp_path, params))
    # report_helpers: test WER 0.55/0.95 (summarymixing), 0.65/0.96 (mhsa); CER is half of it
    assert sentence.startswith("fine-tuned test CER from the pre-trained encoder")
    assert "summarymixing 0.275 vs 0.475 (lower from pre-training)" in sentence
    assert "mhsa 0.325 vs 0.480 (lower from pre-training)" in sentence
    assert sentence.endswith("; lowest after pre-training: summarymixing")


IMPORTED_ROW = (
    f"| summarymixing | summarymixing | imported from {IMPORT_SOURCE} (SpeechBrain), 0 updates "
    "| – | – | – | – | – | – | – | – | – |"
)
MHSA_ROW = (
    "| mhsa | mhsa | 50 | 1.389 | 6.000 | 4.000 | 0.500 | 1.000 | 1.00x | 1000 | 1.00x | 125.0 |"
)


def _is_png(path: Path) -> bool:
    """A PNG with a non-empty image (its signature and the IHDR's width and height)."""
    head = path.read_bytes()[:24]
    width, height = struct.unpack(">II", head[16:24])
    return head[:8] == b"\x89PNG\r\n\x1a\n" and width > 0 and height > 0


def test_an_imported_variant_is_shown_as_imported(built: tuple[Path, str], tmp_path: Path) -> None:
    write_inputs(tmp_path)
    write_import(tmp_path, "summarymixing")
    params = load(write_params(tmp_path, f"sqlite:///{tmp_path}/mlflow.db"))
    study = gather(tmp_path, params)
    files = write_report(study, params, tmp_path / "reports", PROVENANCE)
    documents = _documents(tmp_path)
    publish(study, files.figures[FIGURE], documents)

    text = files.report.read_text()
    assert IMPORTED_ROW in text and MHSA_ROW in text
    assert "pre-training step took" not in text  # its only cost sentence compared it to mhsa
    assert (
        f"- summarymixing's encoder was imported from {IMPORT_SOURCE} (SpeechBrain) instead of "
        "pre-trained here, so it has no pre-training cost to compare.\n" in text
    )
    assert (
        "of the rank-0 worker. Imported from a SpeechBrain checkpoint instead of pre-trained "
        "here: `summarymixing`; no training numbers, left out of the loss and cost figures.\n"
        in text
    )
    imported = (
        f"- `summarymixing`: imported from {IMPORT_SOURCE} (SpeechBrain), not an MLflow model"
    )
    assert f"{imported}\n- `mhsa`: `models:/smx-mhsa/3`" in text
    assert f"{imported}\n- `mhsa`: `models:/smx-mhsa@latest`" in documents.readme.read_text()
    joined = " ".join(text.split())
    assert (
        "(each encoder pre-trained here saw up to 1.389 h of audio in 50 updates; imported: "
        "summarymixing)" in joined
    )
    # probes and fine-tuning as for a pre-trained encoder
    assert ASR_ROW in text and ASR_ROW in documents.results.read_text()
    assert "summarymixing 0.550 vs 0.950 (lower from pre-training)" in text
    assert "the pre-trained summarymixing encoder beat random init on 3/4 tasks" in text
    # every figure drawn; the loss curves and costs without it differ from those with it
    assert sorted(files.figures) == sorted(FIGURES)
    assert all(_is_png(path) for path in files.figures.values())
    for name in ("pretrain_loss.png", "pretrain_cost.png"):
        assert (
            files.figures[name].read_bytes() != (built[0] / "reports/figures" / name).read_bytes()
        )
    # its metrics (summary.json, the MLflow parent's): no pre-training numbers, the rest kept
    summary = json.loads(files.summary.read_text())["variants"]
    sm, mhsa = summary["summarymixing"], summary["mhsa"]
    assert not [name for name in sm if name.startswith("pretrain.")]
    assert sorted(sm) == sorted(n for n in mhsa if not n.startswith("pretrain."))
    assert mhsa["pretrain.step_time_s"] == pytest.approx(1.0)
    assert sm["finetune.random_init.test.wer"] == pytest.approx(0.95)


def test_an_imported_baseline_compares_no_cost(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    write_import(tmp_path, "mhsa", "sb/mhsa")
    study = gather(tmp_path, load(write_params(tmp_path, f"sqlite:///{tmp_path}/mlflow.db")))

    assert cost_ratios(study) == []
    table = pretrain_table(study).splitlines()
    assert table[0].endswith("| time × mhsa | peak memory (MB) | memory × mhsa | audio s per s |")
    assert table[2:] == [
        "| summarymixing | summarymixing | 50 | 1.389 | 6.000 | 4.000 | 0.500 | 0.800 | – | 900 "
        "| – | 125.0 |",
        "| mhsa | mhsa | imported from sb/mhsa (SpeechBrain), 0 updates | – | – | – | – | – | – "
        "| – | – | – |",
    ]
    lines = findings(study)
    assert not [line for line in lines if "pre-training step took" in line]
    assert lines[0] == (
        "mhsa's encoder was imported from sb/mhsa (SpeechBrain) instead of pre-trained here, so "
        "it has no pre-training cost to compare; as mhsa is the baseline, no pre-training costs "
        "are compared."
    )
    assert not [name for name in variant_metrics(study, "mhsa") if name.startswith("pretrain.")]
    assert variant_metrics(study, "summarymixing")["pretrain.peak_memory_mb"] == 900.0


def test_a_study_of_imported_encoders_only_still_draws(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    write_import(tmp_path, "summarymixing", "sb/sm")
    write_import(tmp_path, "mhsa", "sb/mhsa")
    params = load(write_params(tmp_path, f"sqlite:///{tmp_path}/mlflow.db"))
    study = gather(tmp_path, params)

    assert "(every encoder was imported, none pre-trained here: summarymixing, mhsa)" in limits(
        params, study
    )
    assert [line for line in findings(study) if "imported from" in line] == [
        "summarymixing's encoder was imported from sb/sm (SpeechBrain) instead of pre-trained "
        "here, so it has no pre-training cost to compare.",
        "mhsa's encoder was imported from sb/mhsa (SpeechBrain) instead of pre-trained here, so "
        "it has no pre-training cost to compare.",
    ]
    assert _is_png(pretrain_loss(study, tmp_path / "loss.png"))
    assert _is_png(pretrain_cost(study, tmp_path / "cost.png"))


@pytest.mark.parametrize(
    ("edit", "sentence"),
    [
        (
            {"init": "huggingface"},
            "init is 'huggingface', expected 'speechbrain'",
        ),
        ({"source": None}, "source is missing"),
        ({"source": ""}, "source is empty, expected the imported folder"),
        ({"steps": "0"}, "steps is '0', expected an integer"),
    ],
)
def test_a_malformed_import_names_the_file_and_the_key(
    inputs: tuple[Path, object], edit: dict, sentence: str
) -> None:
    root, params = inputs
    write_import(root, "mhsa")
    path = root / "metrics/pretrain/mhsa.json"
    data = json.loads(path.read_text()) | edit
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    with pytest.raises(ReportError) as err:
        gather(root, params)
    assert str(err.value) == (
        f"metrics/pretrain/mhsa.json: {sentence}; re-run `dvc repro pretrain@mhsa`"
    )


def test_an_import_without_its_history_names_the_file(inputs: tuple[Path, object]) -> None:
    root, params = inputs
    write_import(root, "summarymixing")
    (root / "plots/pretrain/summarymixing.csv").unlink()
    with pytest.raises(ReportError) as err:
        gather(root, params)
    assert str(err.value) == (
        "plots/pretrain/summarymixing.csv is missing; run `dvc repro pretrain@summarymixing`"
    )
