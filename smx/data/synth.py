"""The embedded corpus: speech synthesised offline by espeak-ng, with Lhotse manifests.

Speakers are distinct combinations of an English accent voice (``en-us``, ``en-gb-x-rp``,
``en-gb-scotland``, ``en-029`` ...), a voice variant (``m3``, ``f2``, ``Alex`` ...), a base
pitch, a speaking rate and a vocal-tract scale that multiplies every frequency of the voice
(formants and pitch alike, as a shorter or longer vocal tract would), which no style changes.
Sentences come from SLURP-like intent templates with slot values or from a free-reading
list (:mod:`smx.data.text`). Speaking styles, the stand-in for emotion, are offsets of
espeak-ng's rate and pitch (or its whisper variant). Noise (white, pink, brown, or babble
made of other synthesised speech) is added at several SNRs. Audio is resampled from
espeak-ng's 22.05 kHz to the configured rate and stored as mono FLAC.

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
>>> speaker = Speaker("spk000", "en-gb-x-rp", "m3", "m", pitch=40, rate=160, tract=1.1)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smx.atomic import write_json, write_text
from smx.config import BUILTIN_STYLES
from smx.config import StyleCfg as Style
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
#: a speaker's vocal-tract scale: its voice's frequencies are multiplied by it (the audio is
#: resampled as if espeak-ng had written it at 22.05 kHz x scale), its duration divided by it
TRACT_RANGE = (0.84, 1.19)
EST_SECONDS = 3.0  # first guess of the mean utterance duration (sizes the first round)

#: split name -> (recordings, supervisions), as :func:`smx.data.manifests.write_corpus` takes
Splits = dict[str, tuple[list[Any], list[Any]]]


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an accent voice, a variant, a base pitch, a rate, a tract scale.

    Arguments
    ---------
    id : str
        ``spkNNN``.
    accent : str
        The espeak-ng accent voice (:data:`ACCENTS`).
    variant : str
        The espeak-ng voice variant (:data:`VARIANTS`).
    gender : str
        ``m`` or ``f``, the variant's voice gender.
    pitch : int
        Base pitch, espeak-ng ``-p`` (0..99).
    rate : int
        Base speaking rate, espeak-ng ``-s`` (words per minute).
    tract : float
        Vocal-tract scale (:data:`TRACT_RANGE`): every frequency of the voice is multiplied
        by it, whatever the style.

    Example
    -------
    >>> Speaker("spk000", "en-us", "f2", "f", pitch=50, rate=170, tract=0.9).variant
    'f2'
    """

    id: str
    accent: str
    variant: str
    gender: str
    pitch: int
    rate: int
    tract: float = 1.0


#: the built-in speaking styles (their settings live in :data:`smx.config.BUILTIN_STYLES`)
STYLES: dict[str, Style] = BUILTIN_STYLES


@dataclass(frozen=True)
class Utterance:
    """Everything one synthetic utterance is made of (a pure function of seed and index).

    Arguments
    ---------
    seed : int
        The corpus seed.
    index : int
        Position in the corpus.
    id : str
        ``<speaker id>-<index:06d>``.
    speaker : Speaker
        Who speaks.
    style : str
        The style's name (its label).
    text : str
        What is said.
    intent : str
        The intent of a templated sentence, ``none`` for free reading.
    subset : str
        ``intent`` or ``free``.
    noise : str
        ``none``, ``white``, ``pink``, ``brown`` or ``babble``.
    snr_db : float or None
        Signal-to-noise ratio of the added noise (None without noise).
    split : str
        ``train``, ``dev``, ``test`` or ``heldout``.
    voice : Style
        The style's settings (what espeak-ng changes of the speaker's voice).

    Example: :meth:`CorpusPlan.utterance`.
    """

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
    voice: Style

    @property
    def path(self) -> str:
        """Audio path relative to the corpus directory."""
        return f"audio/{self.speaker.id}/{self.id}.flac"


def espeak_version() -> str:
    """The installed espeak-ng version line.

    Raises
    ------
    PrepareError
        espeak-ng is not on PATH.

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
    """``count`` speakers, each a distinct (accent, variant) pair with its own pitch, rate and
    vocal-tract scale.

    Arguments
    ---------
    count : int
        Number of speakers (pairs are reused with other pitch/rate beyond 8 x variants).
    seed : int
        The corpus seed.
    variants : dict[str, str] or None
        Variant -> gender (default: :data:`VARIANTS`).

    Returns
    -------
    list[Speaker]
        ``spk000``, ``spk001``, ... with distinct (accent, variant, pitch, rate).

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
        tract = round(float(rng.uniform(*TRACT_RANGE)), 3)
        if (accent, variant, pitch, rate) in seen:
            continue
        seen.add((accent, variant, pitch, rate))
        spk_id = f"spk{len(speakers):03d}"
        speakers.append(Speaker(spk_id, accent, variant, variants[variant], pitch, rate, tract))
    return speakers


def espeak_args(speaker: Speaker, style: Style, text: str) -> list[str]:
    """The espeak-ng command that says ``text`` as ``speaker`` in ``style`` (WAV on stdout).

    Pitch and rate are the speaker's plus the style's offset, clipped to espeak-ng's ranges;
    the whisper style swaps the variant for the whisper variant of the speaker's gender.

    Arguments
    ---------
    speaker : Speaker
        Who speaks.
    style : Style
        How (:data:`STYLES`).
    text : str
        What.

    Returns
    -------
    list[str]
        The command line.

    Example
    -------
    >>> espeak_args(Speaker("spk001", "en-us", "f2", "f", 50, 170, 1.0), STYLES["whisper"], "hi")
    ['espeak-ng', '-v', 'en-us+whisperf', '-p', '50', '-s', '170', '--stdout', 'hi']
    """
    variant = WHISPER[speaker.gender] if style.whisper else speaker.variant
    pitch = min(99, max(0, speaker.pitch + style.pitch_offset))
    rate = min(450, max(80, round(speaker.rate * style.rate_scale)))
    voice = f"{speaker.accent}+{variant}"
    return [ESPEAK, "-v", voice, "-p", str(pitch), "-s", str(rate), "--stdout", text]


@dataclass(frozen=True)
class CorpusPlan:
    """What the corpus is made of: speakers, held-out speakers, sentences, settings.

    Arguments
    ---------
    seed : int
        The corpus seed.
    speakers : tuple[Speaker, ...]
        Every speaker.
    heldout : frozenset[str]
        Ids of the speakers of the ``heldout`` split.
    sentences : tuple[str, ...]
        The free-reading sentences.
    styles : dict[str, Style]
        The speaking styles to draw from, by name (the style labels).
    noise_kinds : tuple[str, ...]
        The noise kinds to draw from.
    snr_db : tuple[float, ...]
        The signal-to-noise ratios to draw from.
    noise_prob, free_fraction : float
        Chance that an utterance is noisy, and that it is free reading.
    dev_fraction, test_fraction : float
        Chance that an utterance of a non-held-out speaker goes to dev, to test.

    Example: :func:`make_plan`.
    """

    seed: int
    speakers: tuple[Speaker, ...]
    heldout: frozenset[str]
    sentences: tuple[str, ...]
    styles: dict[str, Style]
    noise_kinds: tuple[str, ...]
    snr_db: tuple[float, ...]
    noise_prob: float
    free_fraction: float
    intents: tuple[str, ...]
    dev_fraction: float
    test_fraction: float

    def utterance(self, index: int) -> Utterance:
        """The ``index``-th utterance (deterministic; independent of the other ones).

        Every ``len(speakers)`` consecutive utterances have every speaker once.

        Example
        -------
        >>> from smx.config import SynthCfg
        >>> utt = make_plan(SynthCfg(num_speakers=4, heldout_speakers=2)).utterance(7)
        >>> utt.id.endswith("-000007"), utt.path == f"audio/{utt.speaker.id}/{utt.id}.flac"
        (True, True)
        """
        n = len(self.speakers)
        block = np.random.default_rng([self.seed, 202, index // n]).permutation(n)
        speaker = self.speakers[int(block[index % n])]
        rng = np.random.default_rng([self.seed, 303, index])
        style = list(self.styles)[int(rng.integers(len(self.styles)))]
        if rng.random() < self.free_fraction:
            intent, subset = "none", "free"
            text = self.sentences[int(rng.integers(len(self.sentences)))]
        else:
            subset = "intent"
            intent, text = intent_sentence(rng, self.intents)
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
            self.seed,
            index,
            uid,
            speaker,
            style,
            text,
            intent,
            subset,
            noise,
            snr,
            split,
            self.styles[style],
        )


def make_plan(synth: Any, variants: dict[str, str] | None = None) -> CorpusPlan:
    """The :class:`CorpusPlan` of a ``SynthCfg``.

    Arguments
    ---------
    synth : SynthCfg
        The ``data.synth`` section (:class:`smx.config.SynthCfg`).
    variants : dict[str, str] or None
        Variant -> gender of the voice variants to draw speakers from (default:
        :data:`VARIANTS`).

    Returns
    -------
    CorpusPlan
        Speakers, held-out speakers (drawn by the seed), sentences and settings.

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
        styles=synth.style_settings(),
        noise_kinds=tuple(synth.noise_kinds),
        snr_db=tuple(synth.snr_db),
        noise_prob=synth.noise_prob,
        free_fraction=synth.free_reading_fraction,
        intents=tuple(synth.intent_names()),
        dev_fraction=synth.dev_fraction,
        test_fraction=synth.test_fraction,
    )


# ----------------------------------------------------------------------------------------
# rendering (runs in worker processes: numpy, soundfile and subprocess only)


def speak(speaker: Speaker, style: Style, text: str, sampling_rate: int) -> np.ndarray:
    """Run espeak-ng and return ``[S]`` float32 audio at ``sampling_rate``, the voice's
    frequencies multiplied by the speaker's vocal-tract scale.

    Arguments
    ---------
    speaker, style, text : Speaker, Style, str
        As for :func:`espeak_args`.
    sampling_rate : int
        Output rate (espeak-ng's 22.05 kHz is resampled).

    Returns
    -------
    np.ndarray
        ``[S]`` float32.

    Raises
    ------
    RuntimeError
        espeak-ng failed or wrote nothing.

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
    return resample_fft(wave, round(rate * speaker.tract), sampling_rate)


def render(utt: Utterance, sampling_rate: int, babble: np.ndarray) -> np.ndarray:
    """Synthesise one utterance with its style and noise.

    Arguments
    ---------
    utt : Utterance
        The utterance (:meth:`CorpusPlan.utterance`).
    sampling_rate : int
        Output rate.
    babble : np.ndarray
        ``[N]`` babble noise (:func:`babble_bank`), looped from a random offset.

    Returns
    -------
    np.ndarray
        ``[S]`` float32 audio, peak at most :data:`smx.data.audio.PEAK`.

    Raises
    ------
    RuntimeError
        espeak-ng failed or produced silence.

    Example
    -------
    >>> from smx.config import SynthCfg
    >>> plan = make_plan(SynthCfg(num_speakers=4, heldout_speakers=2, noise_prob=1.0))
    >>> utt = plan.utterance(0)
    >>> audio = render(utt, 16000, np.ones(100, dtype=np.float32))
    >>> utt.noise != "none", round(float(np.abs(audio).max()), 5) <= 0.99
    (True, True)
    """
    speech = speak(utt.speaker, utt.voice, utt.text, sampling_rate)
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
    """Give a worker process the corpus directory, the rate and the babble noise."""
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
    plan : CorpusPlan
        Draws the talkers (never held-out speakers) and sentences (seeded by its seed).
    sampling_rate : int
        Output rate.
    talkers : int
        Overlapping streams of four sentences each.

    Returns
    -------
    np.ndarray
        ``[N]`` float32, N the length of the shortest stream.

    Example
    -------
    >>> from smx.config import SynthCfg
    >>> bank = babble_bank(make_plan(SynthCfg(num_speakers=4, heldout_speakers=2)), 16000, 2)
    >>> bank.dtype, round(float(np.sqrt(np.mean(bank**2))), 3)
    (dtype('float32'), 1.0)
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
    """The outcome of :func:`synthesise`: kept utterances, failures and timing.

    Arguments
    ---------
    utterances : list[tuple[Utterance, int]]
        (utterance, samples) of every kept utterance, in index order.
    failures : list[tuple[Utterance, str]]
        (utterance, error) of every utterance that could not be synthesised.
    new_seconds : float
        Kept audio synthesised by this run (files of a previous run excluded).
    wall_seconds : float
        Time the synthesis took.
    workers : int
        Processes used.

    Example
    -------
    >>> SynthRun([], [], new_seconds=30.0, wall_seconds=2.0, workers=4).realtime_factor
    15.0
    """

    utterances: list[tuple[Utterance, int]]
    failures: list[tuple[Utterance, str]]
    new_seconds: float
    wall_seconds: float
    workers: int

    @property
    def realtime_factor(self) -> float:
        """Seconds of new audio per second of wall time."""
        return self.new_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass
class _Tally:
    """The running totals of :func:`synthesise`, round after round of utterances."""

    target: float  # seconds of audio to reach
    sampling_rate: int
    progress: Callable[[float], None] | None
    kept: list[tuple[Utterance, int]] = field(default_factory=list)
    failures: list[tuple[Utterance, str]] = field(default_factory=list)
    total: float = 0.0
    new_seconds: float = 0.0
    cutoff: int | None = None  # index just past the utterance that reached the target
    mean_seconds: float = EST_SECONDS

    def round_size(self, workers: int) -> int:
        """Utterances of the next round: enough for what is missing, at the mean duration."""
        return max(2 * workers, math.ceil(1.05 * (self.target - self.total) / self.mean_seconds))

    def add(self, utt: Utterance, frames: int, new: bool, error: str | None) -> None:
        """Count one rendered utterance (ignored once the target was reached)."""
        if self.cutoff is not None:
            return
        if error is not None:
            self.failures.append((utt, error))
            return
        seconds = frames / self.sampling_rate
        self.kept.append((utt, frames))
        self.total += seconds
        self.new_seconds += seconds if new else 0.0
        if self.progress is not None:
            self.progress(seconds)
        if self.total >= self.target:
            self.cutoff = utt.index + 1

    def end_round(self) -> None:
        """Update the mean utterance duration that sizes the next round."""
        self.mean_seconds = max(0.5, self.total / max(1, len(self.kept)))


def synthesise(
    plan: CorpusPlan,
    out_dir: str | Path,
    hours: float,
    sampling_rate: int,
    workers: int = 0,
    progress: Callable[[float], None] | None = None,
) -> SynthRun:
    """Write utterances 0, 1, ... to ``out_dir/audio`` until they total ``hours`` of audio.

    Files of a previous run with the same plan are kept, so an interrupted run resumes.

    Arguments
    ---------
    plan : CorpusPlan
        The corpus plan (:func:`make_plan`).
    out_dir : str or Path
        The corpus directory.
    hours : float
        Target duration; the corpus ends with the utterance that reaches it.
    sampling_rate : int
        Output rate in Hz.
    workers : int
        Processes (0 = every core available to this process).
    progress : Callable[[float], None] or None
        Called with the seconds of audio each finished utterance adds.

    Returns
    -------
    SynthRun
        The kept utterances, the failures and the timing.

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
    start = time.perf_counter()
    babble = babble_bank(plan, sampling_rate)
    tally = _Tally(hours * 3600.0, sampling_rate, progress)
    index = 0
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, _init_worker, (str(out), sampling_rate, babble)) as pool:
        while tally.cutoff is None:
            batch = [plan.utterance(i) for i in range(index, index + tally.round_size(workers))]
            index += len(batch)
            rendered = pool.imap(_work, batch, chunksize=4)
            for utt, (_, frames, new, error) in zip(batch, rendered, strict=True):
                tally.add(utt, frames, new, error)
            tally.end_round()
    wall = time.perf_counter() - start
    for i in range(tally.cutoff, index):  # utterances rendered past the target are not used
        (out / plan.utterance(i).path).unlink(missing_ok=True)
    return SynthRun(tally.kept, tally.failures, tally.new_seconds, wall, workers)


def verification_trials(utterances: list[Utterance]) -> list[tuple[int, str, str]]:
    """Every pair of held-out utterances is a trial: 1 for the same speaker, else 0.

    All pairs rather than a few per utterance: with a few dozen held-out utterances, two
    trials each leave an EER that moves by several points with the trials drawn.

    Arguments
    ---------
    utterances : list[Utterance]
        The held-out utterances.

    Returns
    -------
    list[tuple[int, str, str]]
        ``(label, enrol_id, test_id)`` with ``enrol_id < test_id``, sorted.

    Example
    -------
    >>> from smx.config import SynthCfg
    >>> plan = make_plan(SynthCfg(num_speakers=4, heldout_speakers=2, free_sentences=10,
    ...     noise_prob=0.0, free_reading_fraction=0.0))
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

    Arguments
    ---------
    data_cfg : DataCfg
        The ``data`` section (its ``synth`` settings except ``workers``, rate, alphabet).
    version : str
        The espeak-ng version (:func:`espeak_version`).

    Returns
    -------
    dict[str, Any]
        JSON-ready, as :func:`smx.data.manifests.begin_prepare` takes it.

    Example
    -------
    >>> from smx.config import DataCfg
    >>> fingerprint(DataCfg(), "1.51")["synth"]["seed"]
    0
    """
    return {
        "corpus": "synth",
        "format": 2,
        "espeak_ng": version,
        "sample_rate": data_cfg.sample_rate,
        "alphabet": data_cfg.alphabet,
        "synth": {k: v for k, v in data_cfg.synth.model_dump().items() if k != "workers"},
    }


def speaker_table(plan: CorpusPlan) -> list[dict[str, Any]]:
    """JSON-ready description of every speaker (and whether it is held out).

    Arguments
    ---------
    plan : CorpusPlan
        The corpus plan.

    Returns
    -------
    list[dict[str, Any]]
        One dict per speaker: its fields and ``heldout``.

    Example
    -------
    >>> from smx.config import SynthCfg
    >>> sorted(speaker_table(make_plan(SynthCfg(num_speakers=4, heldout_speakers=2)))[0])
    ['accent', 'gender', 'heldout', 'id', 'pitch', 'rate', 'tract', 'variant']
    """
    return [{**asdict(s), "heldout": s.id in plan.heldout} for s in plan.speakers]


def usable_variants() -> dict[str, str]:
    """:data:`VARIANTS` that the installed espeak-ng has (needs the whisper variants too).

    Returns
    -------
    dict[str, str]
        Variant -> gender.

    Raises
    ------
    PrepareError
        The whisper variants or most variants are missing.

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
    """The summary of the written corpus and the synthesis run (timing, failures).

    Arguments
    ---------
    summary : dict[str, Any]
        As written to ``summary.json`` (:func:`smx.data.manifests.summarise`).
    run : SynthRun
        The synthesis run.
    out_dir : Path
        The corpus directory.

    Example: :func:`prepare_synth`.
    """

    summary: dict[str, Any]
    run: SynthRun
    out_dir: Path


def _supervision(utt: Utterance, text: str, duration: float) -> Any:
    """The whole-utterance supervision of ``utt`` with its classes in ``custom``."""
    from lhotse import SupervisionSegment

    custom: dict[str, Any] = {
        "intent": utt.intent,
        "style": utt.style,
        "subset": utt.subset,
        "noise": utt.noise,
    }
    if utt.snr_db is not None:
        custom["snr_db"] = utt.snr_db
    return SupervisionSegment(
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


def _synth_splits(
    run: SynthRun, alphabet: str, rate: int, report: PrepareReport
) -> tuple[Splits, list[Utterance]]:
    """Manifests of the kept utterances by split, and the held-out utterances.

    Failed utterances and transcripts outside ``alphabet`` are reported as skipped.
    """
    from lhotse import Recording
    from lhotse.audio import AudioSource

    for utt, error in run.failures:
        report.add_skip(utt.id, utt.path, error)
    splits: Splits = {}
    heldout: list[Utterance] = []
    for utt, frames in run.utterances:
        text, outside = normalise_text(utt.text, alphabet)
        if outside:
            report.add_skip(utt.id, utt.path, f"characters outside data.alphabet: {outside}")
            continue
        report.add_kept(utt.id, utt.path)
        duration = frames / rate
        source = AudioSource(type="file", channels=[0], source=utt.path)
        recs, sups = splits.setdefault(utt.split, ([], []))
        recs.append(Recording(utt.id, [source], rate, frames, duration))
        sups.append(_supervision(utt, text, duration))
        if utt.split == "heldout":
            heldout.append(utt)
    return splits, heldout


def _remove_temporaries(out: Path) -> None:
    """Remove the half-written audio files of a killed run."""
    for stale in (out / "audio").rglob(".*.flac"):
        stale.unlink()


def prepare_synth(out_dir: str | Path, data_cfg: Any, workers: int | None = None) -> SynthResult:
    """Synthesise the embedded corpus into ``out_dir`` and write its Lhotse manifests.

    Writes audio under ``audio/<speaker>/``, the manifests of train/dev/test/heldout,
    ``trials.txt``, ``speakers.json``, ``summary.json``, ``report.json``, ``vocab.json``
    and ``COMPLETE.json`` (see :mod:`smx.data.manifests`).

    Arguments
    ---------
    out_dir : str or Path
        The corpus directory (created; a re-run with the same settings resumes).
    data_cfg : DataCfg
        The ``data`` section of the config (:class:`smx.config.DataCfg`).
    workers : int or None
        Processes (None = ``data.synth.workers``; 0 = all cores).

    Returns
    -------
    SynthResult
        The summary and the synthesis run.

    Raises
    ------
    PrepareError
        espeak-ng or its variants are missing, or too many utterances failed.

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
    from smx.data.manifests import begin_prepare, write_corpus

    begin_prepare(out, fingerprint(data_cfg, version))
    _remove_temporaries(out)
    plan = make_plan(synth, variants)
    workers = synth.workers if workers is None else workers
    with progress_bar("synthesising", synth.hours * 3600, "s of audio") as advance:
        run = synthesise(plan, out, synth.hours, rate, workers, advance)
    report = PrepareReport()
    splits, heldout = _synth_splits(run, data_cfg.alphabet, rate, report)
    trials = verification_trials(heldout)
    write_text(out / "trials.txt", "".join(f"{t[0]} {t[1]} {t[2]}\n" for t in trials))
    write_json(out / "speakers.json", speaker_table(plan))
    write_json(out / "labels.json", label_settings(plan))
    extra = ("trials.txt", "speakers.json", "labels.json")
    labels = {"labels": label_settings(plan)}
    summary = write_corpus(
        out, "synth", splits, report, data_cfg.max_skip_fraction, None, extra, labels
    )
    return SynthResult(summary, run, out)


def label_settings(plan: CorpusPlan) -> dict[str, Any]:
    """Which espeak-ng settings carry which label (the corpus summary's ``labels``).

    Example
    -------
    >>> from smx.config import SynthCfg
    >>> labels = label_settings(make_plan(SynthCfg(styles=["neutral", "fast"])))
    >>> labels["speaker"]["settings"], labels["style"]["styles"]["fast"]
    (['accent', 'variant', 'pitch', 'rate', 'tract'], {'pitch_offset': 0, 'rate_scale': 1.4, 'whisper': False})
    """
    return {
        "speaker": {
            "settings": ["accent", "variant", "pitch", "rate", "tract"],
            "pitch_range": list(PITCH_RANGE),
            "rate_range": list(RATE_RANGE),
            "tract_range": list(TRACT_RANGE),
            "style_free": "tract and accent: no style changes them (whisper swaps the variant)",
            "where": "speakers.json",
        },
        "style": {
            "settings": "pitch_offset is added to the speaker's pitch, rate_scale multiplies "
            "its rate, whisper swaps its variant for the whisper variant of its gender",
            "styles": {
                name: dict(sorted(style.model_dump().items()))
                for name, style in plan.styles.items()
            },
        },
        "intent": {
            "settings": "the sentence's template (free reading: intent none)",
            "intents": list(plan.intents),
        },
    }
