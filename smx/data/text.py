"""Text of the embedded corpus and text handling shared by every corpus.

* Intent templates with slot values, SLURP-like (alarms, music, weather, lights, timers ...):
  :data:`INTENTS`, :data:`SLOTS`, :func:`intent_sentence`.
* A free-reading sentence list built from word lists and sentence patterns, so that ASR is
  not only templates: :func:`free_sentences`.
* Transcript normalisation to a character alphabet (:func:`normalise_text`) and the
  character vocabulary built from training text (:class:`CharVocab`).

Every sentence is written the way espeak-ng says it (numbers and times as words), so the
transcript matches the audio.

Example
-------
>>> import numpy as np
>>> intent, text = intent_sentence(np.random.default_rng(0))
>>> intent in INTENTS and text == normalise_text(text)[0]
True
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_ALPHABET = "abcdefghijklmnopqrstuvwxyz' "


def split_words(text: str) -> tuple[str, ...]:
    """The space-separated words of ``text`` as a tuple (for word lists).

    Example
    -------
    >>> split_words("red  green blue")
    ('red', 'green', 'blue')
    """
    return tuple(text.split())


# ----------------------------------------------------------------------------------------
# slot values (spoken forms)

_NUMBERS = [
    *split_words("one two three four five six seven eight nine ten eleven twelve fifteen twenty"),
    *("twenty five", "thirty", "forty", "forty five", "fifty", "sixty"),
]
_HOURS = split_words("one two three four five six seven eight nine ten eleven twelve")
_TIMES = (
    [f"{h} o'clock" for h in _HOURS]
    + [f"{h} thirty" for h in _HOURS]
    + [f"half past {h}" for h in _HOURS]
    + [f"quarter to {h}" for h in _HOURS]
    + [f"{h} in the morning" for h in _HOURS[4:10]]
    + [f"{h} in the evening" for h in _HOURS[4:11]]
    + ["noon", "midnight", "six fifteen", "seven forty five", "eight twenty"]
)

SLOTS: dict[str, tuple[str, ...]] = {
    "time": tuple(_TIMES),
    "duration": (
        "five minutes",
        "ten minutes",
        "fifteen minutes",
        "twenty minutes",
        "half an hour",
        "an hour",
        "two hours",
        "forty five seconds",
        "three minutes",
        "ninety seconds",
    ),
    "date": (
        "today",
        "tomorrow",
        "on monday",
        "on tuesday",
        "on wednesday",
        "on thursday",
        "on friday",
        "on saturday",
        "on sunday",
        "next week",
        "this weekend",
        "the day after tomorrow",
    ),
    "name": (
        "anna",
        "peter",
        "maria",
        "james",
        "sophie",
        "daniel",
        "laura",
        "thomas",
        "emma",
        "oliver",
        "grace",
        "henry",
        "lucy",
        "samuel",
        "chloe",
        "george",
        "mia",
        "jack",
        "ella",
        "william",
    ),
    "place": (
        "london",
        "paris",
        "berlin",
        "madrid",
        "rome",
        "boston",
        "chicago",
        "toronto",
        "sydney",
        "dublin",
        "edinburgh",
        "lisbon",
        "vienna",
        "oslo",
        "the airport",
        "the station",
        "the city centre",
        "the office",
    ),
    "room": (
        "kitchen",
        "bedroom",
        "living room",
        "bathroom",
        "hallway",
        "office",
        "garage",
        "dining room",
        "garden",
        "nursery",
    ),
    "colour": ("red", "blue", "green", "yellow", "purple", "orange", "pink", "white", "warm"),
    "percent": ("ten", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty"),
    "genre": (
        "jazz",
        "rock",
        "classical music",
        "pop",
        "blues",
        "folk music",
        "hip hop",
        "country music",
        "reggae",
        "soul music",
    ),
    "artist": (
        "the silver lakes",
        "marble jones",
        "the northern lights",
        "river and stone",
        "ada cole",
        "the paper boats",
        "lena marsh",
        "the quiet hours",
        "benny frost",
        "the velvet owls",
    ),
    "food": (
        "pizza",
        "sushi",
        "a curry",
        "noodles",
        "a burger",
        "tacos",
        "a salad",
        "fish and chips",
        "dumplings",
        "pasta",
    ),
    "event": (
        "a meeting",
        "lunch",
        "a dentist appointment",
        "a call",
        "dinner",
        "yoga class",
        "the school run",
        "a haircut",
    ),
    "topic": (
        "sports",
        "politics",
        "science",
        "business",
        "technology",
        "the weather",
        "music",
        "health",
    ),
    "number": tuple(_NUMBERS),
}

INTENTS: dict[str, tuple[str, ...]] = {
    "alarm_set": (
        "set an alarm for {time}",
        "wake me up at {time} {date}",
        "please set an alarm at {time}",
        "i need an alarm for {time} {date}",
        "can you wake me at {time}",
    ),
    "alarm_remove": (
        "cancel my alarm for {time}",
        "remove the alarm at {time} {date}",
        "delete all my alarms for {date}",
        "turn off the {time} alarm",
    ),
    "timer_set": (
        "set a timer for {duration}",
        "start a timer for {duration}",
        "count down {duration} please",
        "remind me in {duration} to check the oven",
    ),
    "play_music": (
        "play some {genre}",
        "put on music by {artist}",
        "play the latest album from {artist}",
        "i want to listen to {genre} in the {room}",
        "shuffle my {genre} playlist",
    ),
    "weather_query": (
        "what is the weather like in {place} {date}",
        "will it rain in {place} {date}",
        "do i need an umbrella {date}",
        "how cold will it be in {place}",
        "tell me the forecast for {date}",
    ),
    "lights_on": (
        "turn on the lights in the {room}",
        "switch the {room} lights on",
        "lights on in the {room} please",
    ),
    "lights_off": (
        "turn off the lights in the {room}",
        "switch off the {room} lights",
        "make it dark in the {room}",
    ),
    "lights_dim": (
        "dim the {room} lights to {percent} percent",
        "set the lights in the {room} to {percent} percent",
        "make the {room} a little darker",
    ),
    "lights_colour": (
        "change the {room} lights to {colour}",
        "make the lights {colour} in the {room}",
        "i want {colour} light in the {room}",
    ),
    "volume_up": (
        "turn the volume up",
        "make it louder please",
        "increase the volume by {percent} percent",
        "i can not hear the music turn it up",
    ),
    "volume_down": (
        "turn the volume down",
        "make it quieter please",
        "lower the volume to {percent} percent",
        "the music is too loud",
    ),
    "calendar_set": (
        "add {event} with {name} {date} at {time}",
        "schedule {event} for {date}",
        "put {event} in my calendar at {time}",
        "remind me about {event} {date}",
    ),
    "email_send": (
        "send an email to {name}",
        "write to {name} that i will be late",
        "email {name} about {event} {date}",
        "reply to the last message from {name}",
    ),
    "news_query": (
        "what is the latest news about {topic}",
        "read me the {topic} headlines",
        "any news from {place} today",
        "give me a summary of the {topic} news",
    ),
    "taxi_order": (
        "book a taxi to {place}",
        "get me a cab to {place} at {time}",
        "i need a ride to {place} {date}",
        "order a taxi for {number} people to {place}",
    ),
    "takeaway_order": (
        "order {food} for dinner",
        "i would like to order {food} from the usual place",
        "get {number} portions of {food} delivered",
        "can you find a place that delivers {food}",
    ),
    "datetime_query": (
        "what time is it in {place}",
        "what is the date {date}",
        "what day is it {date}",
        "how many days until {date}",
    ),
}

_SLOT_RE = re.compile(r"\{(\w+)\}")


def intent_sentence(
    rng: np.random.Generator, intents: Sequence[str] | None = None
) -> tuple[str, str]:
    """Draw an intent and a sentence from one of its templates with random slot values.

    Arguments
    ---------
    rng : np.random.Generator
        The random generator (draws are deterministic for a seeded generator).
    intents : Sequence[str] | None
        The intents to draw from, names of :data:`INTENTS` (None: all of them).

    Returns
    -------
    tuple[str, str]
        ``(intent, text)``.

    Example
    -------
    >>> intent_sentence(np.random.default_rng(3))[0] in INTENTS
    True
    >>> intent_sentence(np.random.default_rng(3), ["lights_on"])[0]
    'lights_on'
    """
    names = sorted(INTENTS if intents is None else intents)
    intent = names[int(rng.integers(len(names)))]
    templates = INTENTS[intent]
    template = templates[int(rng.integers(len(templates)))]

    def fill(match: re.Match[str]) -> str:
        values = SLOTS[match.group(1)]
        return values[int(rng.integers(len(values)))]

    return intent, " ".join(_SLOT_RE.sub(fill, template).split())


# ----------------------------------------------------------------------------------------
# free reading

_WORDS: dict[str, tuple[str, ...]] = {
    "adj": split_words(
        "old young quiet busy small large bright dark careful tired happy patient "
        "clever gentle brave hungry curious silent heavy narrow wooden golden"
    ),
    "person": split_words(
        "farmer teacher sailor baker doctor painter student driver gardener writer "
        "fisherman nurse pilot carpenter singer traveller shepherd merchant clerk miller"
    ),
    "thing": split_words(
        "basket letter lantern bridge window garden river boat wagon book table door "
        "road house fence market village tower bottle ladder"
    ),
    "verb_past": split_words(
        "carried painted opened watched found repaired cleaned followed crossed built "
        "visited reached noticed closed pushed lifted counted measured"
    ),
    "verb_intr": split_words(
        "waited laughed rested listened smiled walked worked sang slept wandered "
        "returned hesitated whistled"
    ),
    "time": (
        "before dawn",
        "in the morning",
        "at noon",
        "after supper",
        "late at night",
        "on a cold winter day",
        "during the long summer",
        "every sunday",
        "at the end of the week",
        "just after the storm",
    ),
    "place": (
        "near the river",
        "by the old mill",
        "across the valley",
        "at the edge of the forest",
        "in the crowded square",
        "behind the church",
        "along the narrow road",
        "beside the harbour",
        "under the bridge",
        "on the hill",
    ),
    "adverb": split_words(
        "slowly quickly quietly carefully happily patiently suddenly gladly calmly"
    ),
    "feeling": split_words("glad sure afraid certain surprised proud sorry worried"),
}

_PATTERNS: tuple[str, ...] = (
    "the {adj} {person} {verb_past} the {thing} {time}",
    "the {adj} {person} {verb_intr} {adverb} {place}",
    "{time} the {person} {verb_past} a {adj} {thing} {place}",
    "a {adj} {person} {verb_past} the {thing} and {verb_intr} {adverb}",
    "the {person} was {feeling} that the {thing} was so {adj}",
    "nobody knew why the {person} {verb_past} the {adj} {thing} {time}",
    "{place} the {adj} {thing} stood where the {person} {verb_intr}",
    "when the {person} {verb_intr} {place} the {thing} looked {adj}",
    "the {person} and the {person} {verb_past} the {thing} {time}",
    "did the {adj} {person} really {verb_intr_base} {place}",
)
_A_BEFORE_VOWEL = re.compile(r"(^| )a ([aeiou])")
_BASE_FORMS = {
    "waited": "wait",
    "laughed": "laugh",
    "rested": "rest",
    "listened": "listen",
    "smiled": "smile",
    "walked": "walk",
    "worked": "work",
    "sang": "sing",
    "slept": "sleep",
    "wandered": "wander",
    "returned": "return",
    "hesitated": "hesitate",
    "whistled": "whistle",
}


def free_sentences(count: int = 2000, seed: int = 1234) -> list[str]:
    """A fixed list of ``count`` distinct free-reading sentences built from word lists.

    Arguments
    ---------
    count : int
        How many distinct sentences (at most a few tens of thousands exist).
    seed : int
        Seed of the construction; the default gives the corpus' sentence list.

    Returns
    -------
    list[str]
        The sentences, in the order they were first drawn.

    Raises
    ------
    ValueError
        The patterns cannot make ``count`` distinct sentences.

    Example
    -------
    >>> s = free_sentences(500)
    >>> len(s), len(set(s)), s == free_sentences(500)
    (500, 500, True)
    """
    rng = np.random.default_rng(seed)
    sentences: dict[str, None] = {}
    attempts = 0
    while len(sentences) < count:
        attempts += 1
        if attempts > 50 * count:
            raise ValueError(f"count={count} exceeds the distinct sentences the patterns make")
        pattern = _PATTERNS[int(rng.integers(len(_PATTERNS)))]

        def fill(match: re.Match[str]) -> str:
            slot = match.group(1)
            if slot == "verb_intr_base":
                verb = _WORDS["verb_intr"][int(rng.integers(len(_WORDS["verb_intr"])))]
                return _BASE_FORMS[verb]
            words = _WORDS[slot]
            return words[int(rng.integers(len(words)))]

        sentence = _A_BEFORE_VOWEL.sub(r"\1an \2", _SLOT_RE.sub(fill, pattern))
        sentences.setdefault(sentence, None)
    return list(sentences)


# ----------------------------------------------------------------------------------------
# normalisation and vocabulary

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})
_SEPARATORS = re.compile(r"[\s\-–—_/.,!?;:\"()\[\]{}«»“”…]+")


def normalise_text(text: str, alphabet: str = DEFAULT_ALPHABET) -> tuple[str, list[str]]:
    """Normalise a transcript towards ``alphabet``; return it and the characters outside.

    Accents are removed (``é`` -> ``e``), case follows the alphabet (lower-case unless the
    alphabet has only upper-case letters), typographic apostrophes become ``'``, punctuation
    and dashes become spaces, and runs of spaces collapse. Characters that remain outside
    ``alphabet`` (digits, other scripts, symbols) are returned sorted so that the caller can
    skip the utterance with its reason.

    Arguments
    ---------
    text : str
        The raw transcript.
    alphabet : str
        The allowed characters (include the space).

    Returns
    -------
    tuple[str, list[str]]
        The normalised text and the characters of it outside ``alphabet``.

    Example
    -------
    >>> normalise_text("Café  au-lait, s’il vous plaît!")
    ("cafe au lait s'il vous plait", [])
    >>> normalise_text("Room 101 £5")
    ('room 101 £5', ['0', '1', '5', '£'])
    """
    folded = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    upper_only = any(c.isupper() for c in alphabet) and not any(c.islower() for c in alphabet)
    folded = folded.upper() if upper_only else folded.lower()
    clean = " ".join(_SEPARATORS.sub(" ", folded).split())
    allowed = set(alphabet)
    return clean, sorted({c for c in clean if c not in allowed})


@dataclass(frozen=True)
class CharVocab:
    """A character vocabulary: id 0 is the CTC blank, id 1 stands for unknown characters.

    Arguments
    ---------
    chars : str
        The known characters, in id order starting at 2.

    Example
    -------
    >>> vocab = CharVocab.from_texts(["ab c", "cab"])
    >>> vocab.chars, len(vocab)
    (' abc', 6)
    >>> vocab.encode("cab!")
    [5, 3, 4, 1]
    >>> vocab.decode([5, 3, 4]), vocab.unknown_chars(["cab!", "d"])
    ('cab', Counter({'!': 1, 'd': 1}))
    """

    chars: str

    BLANK = "<blank>"
    UNK = "<unk>"

    @classmethod
    def from_texts(cls, texts: Iterable[str | None]) -> CharVocab:
        """Build the vocabulary of every character seen in ``texts`` (None is ignored)."""
        seen: set[str] = set()
        for text in texts:
            if text:
                seen.update(text)
        return cls("".join(sorted(seen)))

    def __len__(self) -> int:
        return len(self.chars) + 2

    @property
    def tokens(self) -> list[str]:
        """Every token in id order."""
        return [self.BLANK, self.UNK, *self.chars]

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``; unknown characters map to 1 (``<unk>``)."""
        index = {c: i + 2 for i, c in enumerate(self.chars)}
        return [index.get(c, 1) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (blank dropped, unknown shown as ``?``)."""
        return "".join(self.chars[i - 2] if i >= 2 else "?" for i in ids if i != 0)

    def unknown_chars(self, texts: Iterable[str | None]) -> Counter[str]:
        """How often each character outside the vocabulary occurs in ``texts``."""
        known = set(self.chars)
        return Counter(c for text in texts if text for c in text if c not in known)

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (atomically)."""
        from smx.atomic import write_json

        write_json(path, {"tokens": self.tokens})

    @classmethod
    def load(cls, path: str | Path) -> CharVocab:
        """Read a vocabulary written by :meth:`save`."""
        tokens = json.loads(Path(path).read_text(encoding="utf-8"))["tokens"]
        return cls("".join(tokens[2:]))
