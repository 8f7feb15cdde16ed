"""The embedded corpus: speech synthesised offline by espeak-ng, with Lhotse manifests.

Speakers are distinct combinations of an English accent voice (``en-us``, ``en-gb-x-rp``,
``en-gb-scotland``, ``en-029`` ...), a voice variant (``m3``, ``f2``, ``Alex`` ...), a base
pitch and a speaking rate. Sentences come from SLURP-like intent templates with slot values
or from a free-reading list (:mod:`smx.data.text`). Speaking styles, the stand-in for
emotion, are offsets of espeak-ng's rate and pitch (or its whisper variant). Noise (white,
pink, brown, or babble made of other synthesised speech) is added at several SNRs. Audio is
resampled from espeak-ng's 22.05 kHz to the configured rate and stored as mono FLAC.

Everything an utterance is made of follows from ``(data.synth.seed, index)``, so the corpus
is the same for any number of workers and is reproduced exactly by the same espeak-ng
version. Synthesis runs in a pool of processes (one espeak-ng subprocess per utterance,
WAV on its stdout). The corpus is cut at the first utterance that brings the total
duration to ``data.synth.hours``.

Splits: the ``heldout_speakers`` speakers form the ``heldout`` split (speaker verification
trials in ``trials.txt``: ``<1|0> <enrol id> <test id>``, 1 = same speaker); the other
speakers' utterances are divided into train/dev/test by ``dev_fraction``/``test_fraction``.

Example
-------
>>> speakers = make_speakers(60, seed=0)
>>> len({(s.accent, s.variant, s.pitch, s.rate) for s in speakers})
60
>>> speaker = Speaker("spk000", "en-gb-x-rp", "m3", "m", pitch=40, rate=160)
>>> espeak_args(speaker, STYLES["fast"], "hello")
['espeak-ng', '-v', 'en-gb-x-rp+m3', '-p', '40', '-s', '224', '--stdout', 'hello']
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smx.atomic import write_json, write_text
from smx.data.audio import (
    audio_frames,
    coloured_noise,
    limit_peak,
    mix_at_snr,
    parse_wav,
    resample_fft,
    write_flac,
)
from smx.data.problems import PrepareError, PrepareReport, progress_bar
from smx.data.text import free_sentences, intent_sentence, normalise_text, split_words

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050
ACCENTS = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
#: human-sounding espeak-ng variants and their voice gender
VARIANTS: dict[str, str] = {
    **{f"m{i}": "m" for i in range(1, 9)},
    **{f"f{i}": "f" for i in range(1, 6)},
    **dict.fromkeys(
        split_words(
            "adam Alex Andy benjamin caleb david ed edward john max Michael paul rob "
            "robert travis victor norbert quincy Lee grandpa"
        ),
        "m",
    ),
    **dict.fromkeys(
        split_words("Alicia Andrea Annie aunty belinda linda steph anika grandma"), "f"
    ),
}
WHISPER = {"m": "whisper", "f": "whisperf"}
PITCH_RANGE = (25, 75)  # espeak-ng -p, 0..99
RATE_RANGE = (145, 195)  # espeak-ng -s, words per minute
EST_SECONDS = 3.0  # first guess of the mean utterance duration (sizes the first round)


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an accent voice, a variant, a base pitch and a rate."""

    id: str
    accent: str
    variant: str
    gender: str
    pitch: int
    rate: int


@dataclass(frozen=True)
class Style:
    """A speaking style as offsets of espeak-ng parameters."""

    rate_scale: float = 1.0
    pitch_offset: int = 0
    whisper: bool = False


STYLES: dict[str, Style] = {
    "neutral": Style(),
    "fast": Style(rate_scale=1.4),
    "slow": Style(rate_scale=0.7),
    "high": Style(pitch_offset=22),
    "low": Style(pitch_offset=-22),
    "whisper": Style(whisper=True),
    "excited": Style(rate_scale=1.25, pitch_offset=18),
    "tired": Style(rate_scale=0.8, pitch_offset=-15),
}


@dataclass(frozen=True)
class Utterance:
    """Everything one synthetic utterance is made of (a pure function of seed and index)."""

    seed: int
    index: int
    id: str
    speaker: Speaker
    style: str
    text: str
    intent: str
    subset: str
    noise: str
    snr_db: float | None
    split: str

    @property
    def path(self) -> str:
        """Audio path relative to the corpus directory."""
        return f"audio/{self.speaker.id}/{self.id}.flac"


def espeak_version() -> str:
    """The installed espeak-ng version line; :class:`PrepareError` if it is missing.

    Example
    -------
    >>> espeak_version().startswith("eSpeak NG text-to-speech")
    True
    """
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise PrepareError(
            "espeak-ng was not found on PATH; install it (Debian/Ubuntu: "
            "sudo apt-get install espeak-ng, macOS: brew install espeak-ng) and run again"
        )
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return res.stdout.strip().split("  Data at:")[0]


def available_variants() -> set[str]:
    """Names of the voice variants the installed espeak-ng knows.

    Example
    -------
    >>> {"m3", "f2", "whisper"} <= available_variants()
    True
    """
    res = subprocess.run([ESPEAK, "--voices=variant"], capture_output=True, text=True, check=False)
    names = set()
    for line in res.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith("!v/"):
            names.add(fields[4][3:])
    return names


def make_speakers(count: int, seed: int, variants: dict[str, str] | None = None) -> list[Speaker]:
    """``count`` speakers, each a distinct (accent, variant) pair with its own pitch and rate.

    Arguments
    ---------
    count: number of speakers (pairs are reused with other pitch/rate beyond 8 x variants).
    seed: the corpus seed.
    variants: variant -> gender (default: :data:`VARIANTS`).

    Example
    -------
    >>> [s.id for s in make_speakers(3, seed=1)]
    ['spk000', 'spk001', 'spk002']
    """
    variants = VARIANTS if variants is None else variants
    rng = np.random.default_rng([seed, 101])
    pairs = [(a, v) for a in ACCENTS for v in sorted(variants)]
    order = rng.permutation(len(pairs))
    speakers: list[Speaker] = []
    seen: set[tuple[str, str, int, int]] = set()
    k = 0
    while len(speakers) < count:
        accent, variant = pairs[int(order[k % len(pairs)])]
        k += 1
        pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
        rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
        if (accent, variant, pitch, rate) in seen:
            continue
        seen.add((accent, variant, pitch, rate))
        speakers.append(
            Speaker(f"spk{len(speakers):03d}", accent, variant, variants[variant], pitch, rate)
        )
    return speakers


def espeak_args(speaker: Speaker, style: Style, text: str) -> list[str]:
    """The espeak-ng command that says ``text`` as ``speaker`` in ``style`` (WAV on stdout).

    Pitch and rate are the speaker's plus the style's offset, clipped to espeak-ng's ranges;
    the whisper style swaps the variant for the whisper variant of the speaker's gender.

    Arguments
    ---------
    speaker: who speaks.
    style: how (:data:`STYLES`).
    text: what.

    Example: the module docstring.
    """
    variant = WHISPER[speaker.gender] if style.whisper else speaker.variant
    pitch = min(99, max(0, speaker.pitch + style.pitch_offset))
    rate = min(450, max(80, round(speaker.rate * style.rate_scale)))
    voice = f"{speaker.accent}+{variant}"
    return [ESPEAK, "-v", voice, "-p", str(pitch), "-s", str(rate), "--stdout", text]


@dataclass(frozen=True)
class CorpusPlan:
    """What the corpus is made of: speakers, held-out speakers, sentences, settings."""

    seed: int
    speakers: tuple[Speaker, ...]
    heldout: frozenset[str]
    sentences: tuple[str, ...]
    styles: tuple[str, ...]
    noise_kinds: tuple[str, ...]
    snr_db: tuple[float, ...]
    noise_prob: float
    free_fraction: float
    dev_fraction: float
    test_fraction: float

    def utterance(self, index: int) -> Utterance:
        """The ``index``-th utterance (deterministic; independent of the other ones)."""
        n = len(self.speakers)
        block = np.random.default_rng([self.seed, 202, index // n]).permutation(n)
        speaker = self.speakers[int(block[index % n])]
        rng = np.random.default_rng([self.seed, 303, index])
        style = self.styles[int(rng.integers(len(self.styles)))]
        if rng.random() < self.free_fraction:
            intent, subset = "none", "free"
            text = self.sentences[int(rng.integers(len(self.sentences)))]
        else:
            subset = "intent"
            intent, text = intent_sentence(rng)
        noise, snr = "none", None
        if rng.random() < self.noise_prob:
            noise = self.noise_kinds[int(rng.integers(len(self.noise_kinds)))]
            snr = float(self.snr_db[int(rng.integers(len(self.snr_db)))])
        u = rng.random()
        if speaker.id in self.heldout:
            split = "heldout"
        elif u < self.dev_fraction:
            split = "dev"
        elif u < self.dev_fraction + self.test_fraction:
            split = "test"
        else:
            split = "train"
        uid = f"{speaker.id}-{index:06d}"
        return Utterance(
            self.seed, index, uid, speaker, style, text, intent, subset, noise, snr, split
        )


def make_plan(synth: Any, variants: dict[str, str] | None = None) -> CorpusPlan:
    """The :class:`CorpusPlan` of a ``SynthCfg`` (``variants`` defaults to :data:`VARIANTS`).

    Arguments
    ---------
    synth: the ``data.synth`` section (:class:`smx.config.SynthCfg`).
    variants: variant -> gender of the voice variants to draw speakers from.

    Example
    -------
    >>> from smx.config import SynthCfg
    >>> plan = make_plan(SynthCfg(num_speakers=10, heldout_speakers=3))
    >>> len(plan.speakers), len(plan.heldout), plan.utterance(5) == plan.utterance(5)
    (10, 3, True)
    """
    speakers = make_speakers(synth.num_speakers, synth.seed, variants)
    order = np.random.default_rng([synth.seed, 404]).permutation(len(speakers))
    heldout = frozenset(speakers[int(i)].id for i in order[: synth.heldout_speakers])
    return CorpusPlan(
        seed=synth.seed,
        speakers=tuple(speakers),
        heldout=heldout,
        sentences=tuple(free_sentences(synth.free_sentences)),
        styles=tuple(synth.styles),
        noise_kinds=tuple(synth.noise_kinds),
        snr_db=tuple(synth.snr_db),
        noise_prob=synth.noise_prob,
        free_fraction=synth.free_reading_fraction,
        dev_fraction=synth.dev_fraction,
        test_fraction=synth.test_fraction,
    )


# ----------------------------------------------------------------------------------------
# rendering (runs in worker processes: numpy, soundfile and subprocess only)


def speak(speaker: Speaker, style: Style, text: str, sampling_rate: int) -> np.ndarray:
    """Run espeak-ng and return ``[S]`` float32 audio at ``sampling_rate``.

    Arguments
    ---------
    speaker, style, text: as for :func:`espeak_args`.
    sampling_rate: output rate (espeak-ng's 22.05 kHz is resampled).

    Example
    -------
    >>> wave = speak(make_speakers(1, seed=0)[0], STYLES["neutral"], "hello world", 16000)
    >>> wave.dtype, 0.5 < wave.shape[0] / 16000 < 3.0
    (dtype('float32'), True)
    """
    res = subprocess.run(
        espeak_args(speaker, style, text), capture_output=True, timeout=120, check=False
    )
    if res.returncode != 0 or not res.stdout:
        message = res.stderr.decode(errors="replace").strip() or f"exit code {res.returncode}"
        raise RuntimeError(f"espeak-ng failed: {message}")
    wave, rate = parse_wav(res.stdout)
    return resample_fft(wave, rate, sampling_rate)


def render(utt: Utterance, sampling_rate: int, babble: np.ndarray) -> np.ndarray:
    """Synthesise one utterance with its style and noise; return ``[S]`` float32 audio.

    Arguments
    ---------
    utt: the utterance (:meth:`CorpusPlan.utterance`).
    sampling_rate: output rate.
    babble: ``[N]`` babble noise (:func:`babble_bank`), looped from a random offset.

    Example
    -------
    >>> from smx.config import SynthCfg
    >>> plan = make_plan(SynthCfg(num_speakers=4, heldout_speakers=2, noise_prob=1.0))
    >>> utt = plan.utterance(0)
    >>> audio = render(utt, 16000, np.ones(100, dtype=np.float32))
    >>> utt.noise != "none", float(np.abs(audio).max()) <= 0.99
    (True, True)
    """
    speech = speak(utt.speaker, STYLES[utt.style], utt.text, sampling_rate)
    if speech.size == 0 or not np.any(speech):
        raise RuntimeError("espeak-ng produced no audio")
    if utt.noise != "none" and utt.snr_db is not None:
        rng = np.random.default_rng([utt.seed, 505, utt.index])
        if utt.noise == "babble":
            start = int(rng.integers(babble.shape[0]))
            noise = np.take(babble, np.arange(start, start + speech.shape[0]), mode="wrap")
        else:
            noise = coloured_noise(utt.noise, speech.shape[0], rng)
        speech = mix_at_snr(speech, noise, utt.snr_db)
    return limit_peak(speech).astype(np.float32)


_WORKER: dict[str, Any] = {}


def _init_worker(out_dir: str, sampling_rate: int, babble: np.ndarray) -> None:
    _WORKER.update(out_dir=Path(out_dir), sampling_rate=sampling_rate, babble=babble)


def _work(utt: Utterance) -> tuple[int, int, bool, str | None]:
    """Render ``utt`` unless a previous run wrote it; return (index, samples, new, error)."""
    out_dir, rate = _WORKER["out_dir"], _WORKER["sampling_rate"]
    path = out_dir / utt.path
    frames = audio_frames(path, rate) if path.exists() else None
    if frames is not None:
        return utt.index, frames, False, None
    try:
        audio = render(utt, rate, _WORKER["babble"])
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return utt.index, 0, False, str(exc)
    write_flac(path, audio, rate)
    return utt.index, int(audio.shape[0]), True, None


def babble_bank(plan: CorpusPlan, sampling_rate: int, talkers: int = 4) -> np.ndarray:
    """A loop of several overlapping synthetic talkers (unit RMS), the babble noise source.

    Arguments
    ---------
    plan: draws the talkers (training speakers only) and sentences (seeded by its seed).
    sampling_rate: output rate.
    talkers: overlapping streams of four sentences each.

    Returns ``[N]`` float32, N the length of the shortest stream.
    """
    rng = np.random.default_rng([plan.seed, 606])
    voices = [s for s in plan.speakers if s.id not in plan.heldout]  # held-out voices stay unheard
    streams = []
    for _ in range(talkers):
        parts = []
        for _ in range(4):
            speaker = voices[int(rng.integers(len(voices)))]
            text = plan.sentences[int(rng.integers(len(plan.sentences)))]
            parts.append(speak(speaker, STYLES["neutral"], text, sampling_rate))
        streams.append(np.concatenate(parts))
    length = min(s.shape[0] for s in streams)
    bank = np.sum([s[:length] for s in streams], axis=0)
    return (bank / max(float(np.sqrt(np.mean(bank**2))), 1e-9)).astype(np.float32)


# ----------------------------------------------------------------------------------------
# the corpus


@dataclass
class SynthRun:
    """The outcome of :func:`synthesise`: kept utterances, failures and timing."""

    utterances: list[tuple[Utterance, int]]  # (utterance, samples)
    failures: list[tuple[Utterance, str]]
    new_seconds: float  # kept audio synthesised by this run (files of a previous run excluded)
    wall_seconds: float
    workers: int

    @property
    def realtime_factor(self) -> float:
        """Seconds of new audio per second of wall time."""
        return self.new_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def synthesise(
    plan: CorpusPlan,
    out_dir: str | Path,
    hours: float,
    sampling_rate: int,
    workers: int = 0,
    progress: Callable[[float], None] | None = None,
) -> SynthRun:
    """Write utterances 0, 1, ... to ``out_dir/audio`` until they total ``hours`` of audio.

    Arguments
    ---------
    plan: the corpus plan (:func:`make_plan`).
    out_dir: the corpus directory.
    hours: target duration; the corpus ends with the utterance that reaches it.
    sampling_rate: output rate in Hz.
    workers: processes (0 = every core available to this process).
    progress: called with the seconds of audio each finished utterance adds.

    Files of a previous run with the same plan are kept, so an interrupted run resumes.

    Example
    -------
    >>> import tempfile
    >>> from smx.config import SynthCfg
    >>> plan = make_plan(SynthCfg(num_speakers=4, heldout_speakers=2))
    >>> run = synthesise(plan, tempfile.mkdtemp(), hours=0.001, sampling_rate=16000, workers=1)
    >>> sum(n for _, n in run.utterances) >= 3.6 * 16000, run.failures
    (True, [])
    """
    out = Path(out_dir)
    workers = workers or len(os.sched_getaffinity(0))
    target = hours * 3600.0
    start = time.perf_counter()
    babble = babble_bank(plan, sampling_rate)
    kept: list[tuple[Utterance, int]] = []
    failures: list[tuple[Utterance, str]] = []
    total, new_seconds, index, cutoff = 0.0, 0.0, 0, None
    mean_guess = EST_SECONDS
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, _init_worker, (str(out), sampling_rate, babble)) as pool:
        while cutoff is None:
            count = max(2 * workers, math.ceil(1.05 * (target - total) / mean_guess))
            batch = [plan.utterance(i) for i in range(index, index + count)]
            index += count
            for utt, (_, frames, new, error) in zip(
                batch, pool.imap(_work, batch, chunksize=4), strict=True
            ):
                if cutoff is not None:
                    continue  # rendered past the target: not used
                if error is not None:
                    failures.append((utt, error))
                    continue
                seconds = frames / sampling_rate
                kept.append((utt, frames))
                total += seconds
                new_seconds += seconds if new else 0.0
                if progress is not None:
                    progress(seconds)
                if total >= target:
                    cutoff = utt.index + 1
            mean_guess = max(0.5, total / max(1, len(kept)))
    wall = time.perf_counter() - start
    for i in range(cutoff, index):  # utterances rendered past the target are not used
        (out / plan.utterance(i).path).unlink(missing_ok=True)
    return SynthRun(kept, failures, new_seconds, wall, workers)


def verification_trials(utterances: list[Utterance]) -> list[tuple[int, str, str]]:
    """Every pair of held-out utterances is a trial: 1 for the same speaker, else 0.

    Returns ``(label, enrol_id, test_id)`` with ``enrol_id < test_id``, sorted. All pairs
    rather than a few per utterance: with a few dozen held-out utterances, two trials each
    leave an EER that moves by several points with the trials drawn.

    Example
    -------
    >>> plan = make_plan(type("C", (), dict(num_speakers=4, seed=0, heldout_speakers=2,
    ...     free_sentences=10, styles=["neutral"], noise_kinds=["white"], snr_db=[10.0],
    ...     noise_prob=0.0, free_reading_fraction=0.0, dev_fraction=0.1, test_fraction=0.1)))
    >>> utts = [u for u in map(plan.utterance, range(16)) if u.split == "heldout"]
    >>> trials = verification_trials(utts)
    >>> n = len(utts); len(trials) == n * (n - 1) // 2, sorted({t[0] for t in trials})
    (True, [0, 1])
    """
    ordered = sorted(utterances, key=lambda u: u.id)
    return [
        (int(a.speaker.id == b.speaker.id), a.id, b.id)
        for i, a in enumerate(ordered)
        for b in ordered[i + 1 :]
    ]


def fingerprint(data_cfg: Any, version: str) -> dict[str, Any]:
    """What determines the synthetic corpus' content (a change starts the folder over).

    Example
    -------
    >>> from smx.config import DataCfg
    >>> fingerprint(DataCfg(), "1.51")["synth"]["seed"]
    0
    """
    return {
        "corpus": "synth",
        "format": 1,
        "espeak_ng": version,
        "sample_rate": data_cfg.sample_rate,
        "alphabet": data_cfg.alphabet,
        "synth": {k: v for k, v in data_cfg.synth.model_dump().items() if k != "workers"},
    }


def speaker_table(plan: CorpusPlan) -> list[dict[str, Any]]:
    """JSON-ready description of every speaker (and whether it is held out).

    Example
    -------
    >>> from smx.config import SynthCfg
    >>> sorted(speaker_table(make_plan(SynthCfg(num_speakers=4, heldout_speakers=2)))[0])
    ['accent', 'gender', 'heldout', 'id', 'pitch', 'rate', 'variant']
    """
    return [{**asdict(s), "heldout": s.id in plan.heldout} for s in plan.speakers]


def usable_variants() -> dict[str, str]:
    """:data:`VARIANTS` that the installed espeak-ng has (needs the whisper variants too).

    Example
    -------
    >>> usable_variants() == VARIANTS  # with the full espeak-ng 1.51 package
    True
    """
    have = available_variants()
    missing = [v for v in WHISPER.values() if v not in have]
    variants = {k: g for k, g in VARIANTS.items() if k in have}
    if missing or len(variants) < 4:
        raise PrepareError(
            "the installed espeak-ng lacks its voice variants (espeak-ng --voices=variant "
            "lists too few); reinstall the full espeak-ng package (e.g. espeak-ng-data)"
        )
    return variants


@dataclass
class SynthResult:
    """The summary of the written corpus and the synthesis run (timing, failures)."""

    summary: dict[str, Any]
    run: SynthRun
    out_dir: Path


def prepare_synth(out_dir: str | Path, data_cfg: Any, workers: int | None = None) -> SynthResult:
    """Synthesise the embedded corpus into ``out_dir`` and write its Lhotse manifests.

    Arguments
    ---------
    out_dir: the corpus directory (created; a re-run with the same settings resumes).
    data_cfg: the ``data`` section of the config (:class:`smx.config.DataCfg`).
    workers: processes (None = ``data.synth.workers``; 0 = all cores).

    Writes audio under ``audio/<speaker>/``, the manifests of train/dev/test/heldout,
    ``trials.txt``, ``speakers.json``, ``summary.json``, ``report.json``, ``vocab.json``
    and ``COMPLETE.json`` (see :mod:`smx.data.manifests`).

    Example
    -------
    >>> import tempfile
    >>> from smx.config import DataCfg
    >>> cfg = DataCfg.model_validate(
    ...     {"synth": {"hours": 0.01, "num_speakers": 4, "heldout_speakers": 2}})
    >>> result = prepare_synth(Path(tempfile.mkdtemp()) / "synth", cfg)
    >>> result.summary["total"]["speakers"], (result.out_dir / "COMPLETE.json").exists()
    (4, True)
    """
    out = Path(out_dir)
    synth, rate = data_cfg.synth, data_cfg.sample_rate
    version = espeak_version()  # checked first: a user mistake fails fast
    variants = usable_variants()

    from lhotse import Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    from smx.data.manifests import begin_prepare, write_corpus

    begin_prepare(out, fingerprint(data_cfg, version))
    for stale in (out / "audio").rglob(".*.flac"):  # temporaries of a killed run
        stale.unlink()
    plan = make_plan(synth, variants)
    with progress_bar("synthesising", synth.hours * 3600, "s of audio") as advance:
        run = synthesise(
            plan, out, synth.hours, rate, synth.workers if workers is None else workers, advance
        )
    report = PrepareReport()
    for utt, error in run.failures:
        report.add_skip(utt.id, utt.path, error)
    splits: dict[str, tuple[list[Any], list[Any]]] = {}
    heldout: list[Utterance] = []
    for utt, frames in run.utterances:
        text, outside = normalise_text(utt.text, data_cfg.alphabet)
        if outside:
            report.add_skip(utt.id, utt.path, f"characters outside data.alphabet: {outside}")
            continue
        report.add_kept(utt.id, utt.path)
        duration = frames / rate
        source = AudioSource(type="file", channels=[0], source=utt.path)
        recording = Recording(utt.id, [source], rate, frames, duration)
        custom: dict[str, Any] = {
            "intent": utt.intent,
            "style": utt.style,
            "subset": utt.subset,
            "noise": utt.noise,
        }
        if utt.snr_db is not None:
            custom["snr_db"] = utt.snr_db
        supervision = SupervisionSegment(
            id=utt.id,
            recording_id=utt.id,
            start=0.0,
            duration=duration,
            channel=0,
            text=text,
            language="English",
            speaker=utt.speaker.id,
            gender=utt.speaker.gender,
            custom=custom,
        )
        recs, sups = splits.setdefault(utt.split, ([], []))
        recs.append(recording)
        sups.append(supervision)
        if utt.split == "heldout":
            heldout.append(utt)
    trials = verification_trials(heldout)
    write_text(out / "trials.txt", "".join(f"{t[0]} {t[1]} {t[2]}\n" for t in trials))
    write_json(out / "speakers.json", speaker_table(plan))
    summary = write_corpus(
        out,
        "synth",
        splits,
        report,
        data_cfg.max_skip_fraction,
        extra_files=("trials.txt", "speakers.json"),
    )
    return SynthResult(summary, run, out)
