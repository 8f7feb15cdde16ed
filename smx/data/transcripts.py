"""Transcript files of a folder import: ``<id> <text>`` lines, TSV, CSV and LJSpeech.

:func:`read_transcript_file` reads one file into :class:`TranscriptLine` s: the audio
file as the line names it (an id, a file name or a relative path), the text, the speaker
when a column gives one, and the line number. The formats:

- ``lines``: ``<id> <text>`` per line (Kaldi ``text`` style);
- ``tsv`` / ``csv``: tab- or comma-separated (CSV may quote ``"text, with commas"``), with
  a header row naming the columns (any of :data:`AUDIO_COLUMNS` for the audio,
  :data:`TEXT_COLUMNS` or :data:`NORMALISED_COLUMNS` for the text, :data:`SPEAKER_COLUMNS`
  for the speaker; the normalised text wins when both are there) or without one (audio,
  text, optional speaker);
- ``ljspeech``: ``id|text|normalised text`` without a header (LJSpeech's ``metadata.csv``);
  the normalised text is used when present.

``auto`` sniffs the delimiter on the first lines: a tab in at least half of them means
TSV, a pipe LJSpeech, a comma CSV (when the name ends in ``.csv``, or when no first field
before a comma holds a space as an ``<id> <text>`` line's would); otherwise a ``.tsv`` or
``.csv`` name decides, and anything else is ``lines``. A line without the delimiter is
then reported as having too few fields.

Example
-------
>>> sniff_format("metadata.csv", "LJ001-0001|Printing, in the only sense|Printing\\n")
'ljspeech'
>>> sniff_format("transcripts.tsv", "a.wav\\tHello\\n"), sniff_format("text", "u1 Hi, you\\n")
('tsv', 'lines')
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

from smx.data.problems import PrepareError

TRANSCRIPT_FORMATS = ("auto", "lines", "tsv", "csv", "ljspeech")
#: where a folder item's speaker comes from: ``auto`` (the line's speaker column when it
#: has one, else as ``parent``), ``column``, ``parent`` (the name of the folder holding the
#: file; none for a file at the top or directly in its split folder) or ``none``
SPEAKER_SOURCES = ("auto", "column", "parent", "none")
AUDIO_COLUMNS = (
    "path",
    "file",
    "filename",
    "file_name",
    "filepath",
    "audio",
    "audio_path",
    "audio_file",
    "audio_filepath",
    "wav",
    "wav_path",
    "id",
    "utt_id",
    "utterance_id",
)
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence")
NORMALISED_COLUMNS = ("normalized_text", "normalised_text")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk", "spk_id", "client_id")
ACCEPTED = (
    "'<id> <text>' lines, TSV or CSV with a header naming the audio, text and optional "
    "speaker columns or without one (audio, text, speaker), or LJSpeech's metadata.csv "
    "(id|text|normalised text)"
)
#: lines read to detect the format
SNIFF_LINES = 20

_ROLES = {
    "audio": AUDIO_COLUMNS,
    "text": TEXT_COLUMNS,
    "normalised": NORMALISED_COLUMNS,
    "speaker": SPEAKER_COLUMNS,
}
_DELIMITERS = {"tsv": "\t", "csv": ",", "ljspeech": "|"}
_HEADERLESS = {
    "tsv": {"audio": 0, "text": 1, "speaker": 2},
    "csv": {"audio": 0, "text": 1, "speaker": 2},
    "ljspeech": {"audio": 0, "text": 1, "normalised": 2},
}


@dataclass(frozen=True)
class TranscriptLine:
    """One transcript: the audio file it names, its text, its speaker and its line number.

    Arguments
    ---------
    audio : str
        The audio file as written: an id, a file name or a relative path.
    text : str
        The transcript (the normalised one when the file has both).
    speaker : str or None
        The speaker column's value; None without one or when it is empty.
    line : int
        The line number in the file (1-based; a quoted CSV field may span several lines).

    Example
    -------
    >>> TranscriptLine("wavs/a.wav", "hello", None, 3).line
    3
    """

    audio: str
    text: str
    speaker: str | None
    line: int


@dataclass(frozen=True)
class TranscriptFile:
    """The lines of a transcript file, its format and whether it has a speaker column.

    Arguments
    ---------
    path : Path
        The file.
    format : str
        The format it was read as (``lines``, ``tsv``, ``csv`` or ``ljspeech``).
    lines : tuple[TranscriptLine, ...]
        Every non-empty line after the header, in file order.
    has_speakers : bool
        True when a column gives the speaker.

    Example: :func:`read_transcript_file`.
    """

    path: Path
    format: str
    lines: tuple[TranscriptLine, ...]
    has_speakers: bool


def transcript_problem(path: Path, line: int, what: str) -> PrepareError:
    """The one-sentence error for an unreadable transcript file (``what`` is at ``line``)."""
    return PrepareError(
        f"cannot read the transcript file {path} at line {line}: {what}; it should hold "
        f"{ACCEPTED} (--format chooses one)"
    )


def sniff_format(name: str, text: str) -> str:
    """The format of a transcript file from its name and first lines (see the module doc).

    Arguments
    ---------
    name : str
        The file name (its suffix breaks ties).
    text : str
        The file's content (only the first :data:`SNIFF_LINES` non-empty lines are read).

    Returns
    -------
    str
        ``lines``, ``tsv``, ``csv`` or ``ljspeech``.

    Example
    -------
    >>> sniff_format("list.txt", "a.wav,Hello\\nb.wav,Bye\\n"), sniff_format("x.csv", "")
    ('csv', 'csv')
    """
    head = [line for line in io.StringIO(text, newline="") if line.strip()][:SNIFF_LINES]
    suffix = PurePath(name).suffix.lower()

    def in_most_lines(delimiter: str) -> bool:
        return 0 < len(head) <= 2 * sum(delimiter in line for line in head)

    if in_most_lines("\t"):
        return "tsv"
    if in_most_lines("|"):
        return "ljspeech"
    first_fields = [line.split(",", 1)[0].strip() for line in head if "," in line]
    if in_most_lines(",") and (suffix == ".csv" or not any(" " in f for f in first_fields)):
        return "csv"
    return {".tsv": "tsv", ".csv": "csv"}.get(suffix, "lines")


def read_transcript_file(path: Path, fmt: str = "auto") -> TranscriptFile:
    """Read a transcript file in format ``fmt`` (``auto``: detected by :func:`sniff_format`).

    Arguments
    ---------
    path : Path
        The transcript file (UTF-8, a byte-order mark is ignored).
    fmt : str
        One of :data:`TRANSCRIPT_FORMATS`.

    Returns
    -------
    TranscriptFile
        Its lines (empty lines and the header left out) and the format used.

    Raises
    ------
    PrepareError
        ``fmt`` is unknown, a header has no audio or text column, or a line has too few
        fields: one sentence naming the file, the line and the formats accepted.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "list.csv"
    >>> _ = path.write_text('file,sentence,client_id\\nclips/a.mp3,"Hi, you",ann\\n')
    >>> read_transcript_file(path).lines
    (TranscriptLine(audio='clips/a.mp3', text='Hi, you', speaker='ann', line=2),)
    >>> _ = path.write_text("file,words\\na.wav,hello\\n")
    >>> read_transcript_file(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smx.data.problems.PrepareError: cannot read the transcript file ... at line 1: its header ...
    """
    if fmt not in TRANSCRIPT_FORMATS:
        raise PrepareError(
            f"unknown transcript format {fmt!r}; choose one of {', '.join(TRANSCRIPT_FORMATS)}"
        )
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    chosen = sniff_format(path.name, text) if fmt == "auto" else fmt
    if chosen == "lines":
        return TranscriptFile(path, chosen, tuple(_plain_lines(text)), False)
    return _read_table(path, text, chosen)


def _plain_lines(text: str) -> Iterator[TranscriptLine]:
    """Every non-empty ``<id> <text>`` line (an id alone has an empty text)."""
    for number, raw in enumerate(io.StringIO(text, newline=""), start=1):
        fields = raw.split(maxsplit=1)
        if fields:
            yield TranscriptLine(
                fields[0], fields[1].strip() if len(fields) > 1 else "", None, number
            )


def _read_table(path: Path, text: str, fmt: str) -> TranscriptFile:
    """A delimited file (``tsv``, ``csv``, ``ljspeech``), with or without a header row."""
    quoting = csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_DELIMITERS[fmt], quoting=quoting, strict=True
    )
    columns: dict[str, int] | None = None
    header_speaker = False
    lines: list[TranscriptLine] = []
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if columns is None:
                columns = _header_columns(cells, path, reader.line_num)
                if columns is not None:
                    header_speaker = "speaker" in columns
                    continue
                columns = _HEADERLESS[fmt]
            lines.append(_table_line(cells, columns, path, reader.line_num))
    except csv.Error as exc:
        raise transcript_problem(
            path, reader.line_num, f"malformed {fmt.upper()} ({exc})"
        ) from None
    has_speakers = header_speaker or any(line.speaker is not None for line in lines)
    return TranscriptFile(path, fmt, tuple(lines), has_speakers)


def _column_name(cell: str) -> str:
    """A header cell as compared with the known names (``Speaker ID`` -> ``speaker_id``)."""
    return cell.strip().lower().replace(" ", "_").replace("-", "_")


def _header_columns(cells: list[str], path: Path, line: int) -> dict[str, int] | None:
    """Role -> column of a header row; None if ``cells`` names no known column (data)."""
    names = [_column_name(cell) for cell in cells]
    found: dict[str, int] = {}
    for role, choices in _ROLES.items():
        index = next((names.index(c) for c in choices if c in names), None)
        if index is not None:
            found[role] = index
    if not found:
        return None
    if "text" not in found and "normalised" in found:
        found["text"] = found["normalised"]
    for role, choices in (("audio", AUDIO_COLUMNS), ("text", TEXT_COLUMNS)):
        if role not in found:
            raise transcript_problem(
                path,
                line,
                f"its header ({', '.join(cells)}) has no {role} column (one of "
                f"{', '.join(choices)})",
            )
    return found


def _table_line(cells: list[str], columns: dict[str, int], path: Path, line: int) -> TranscriptLine:
    """The transcript of one row; :class:`PrepareError` if its audio or text is missing."""
    needed = max(columns["audio"], columns["text"]) + 1
    if len(cells) < needed:
        raise transcript_problem(
            path, line, f"{len(cells)} field(s) where at least {needed} (audio and text) are needed"
        )
    if not cells[columns["audio"]]:
        raise transcript_problem(path, line, "the audio field is empty")

    def cell(role: str) -> str:
        index = columns.get(role)
        return cells[index] if index is not None and index < len(cells) else ""

    text = cell("normalised") or cell("text")
    return TranscriptLine(cells[columns["audio"]], text, cell("speaker") or None, line)
