"""YAML 1.2 reading with line numbers, and validation errors a user can act on.

Configs are read with ruamel.yaml (the YAML 1.2 parser DVC uses, so ``1e-3`` is a float for
both), keeping the line of every key so that a validation error reads
``FILE:LINE: dotted.path: message``.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, printed as ``FILE:LINE: dotted.path: message``.

    Arguments
    ---------
    file : str
        The config file.
    line : int
        1-based line of the offending key (0 when the file could not be read).
    path : str
        Dotted path of the key (``model.d_model``); empty for a problem of the whole file.
    message : str
        What is wrong, in words a user can act on.
    """

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class FieldProblem(ValueError):
    """A cross-field check that failed on ``field`` (a dotted path relative to the section).

    Raised inside pydantic validators; :func:`pydantic_issues` appends ``field`` to the
    error's location so the message points at the offending line.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ConfigError(Exception):
    """A config file that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def load_yaml(path: str | Path) -> tuple[Any, Any]:
    """Read the YAML file ``path``.

    Returns
    -------
    tuple[Any, Any]
        The plain Python data and the ruamel document that keeps each key's line.

    Raises
    ------
    ConfigError
        When the file is missing or unreadable, has a YAML syntax error (with its line), or
        its top level is not a mapping.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(file, 0, "", "file not found")]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigIssue(file, 0, "", f"cannot read the file ({exc.__class__.__name__})")]
        ) from None
    try:
        doc = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark is not None:
            problem += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise ConfigError([ConfigIssue(file, line, "", f"YAML syntax error: {problem}")]) from None
    except YAMLError as exc:
        raise ConfigError([ConfigIssue(file, 0, "", f"YAML syntax error: {exc}")]) from None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise ConfigError(
            [ConfigIssue(file, 1, "", "the top level must be a mapping of keys to values")]
        )
    return to_plain(doc), doc


def to_plain(node: Any) -> Any:
    """ruamel round-trip objects -> plain dict / list / int / float / str / bool / None."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node


def line_of(doc: Any, loc: tuple[str | int, ...]) -> int:
    """1-based line of the deepest YAML node on ``loc`` (pydantic union tags are skipped)."""
    node, line = doc, 1
    for part in loc:
        if isinstance(node, CommentedMap):
            if part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif node.get("kind") == part:
                continue  # discriminated-union tag inserted by pydantic
            else:
                break
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def strip_tags(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Remove the discriminated-union tags pydantic inserts into error locations."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            if part in node:
                node = node[part]
            elif node.get("kind") == part:
                continue
            else:
                node = None
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        out.append(part)
    return tuple(out)


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Annotated / Optional / Union annotations."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _unwrap(a)]
    return [annotation]


def model_at(
    root: type[BaseModel], data: Any, loc: tuple[str | int, ...]
) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc`` (tags already stripped)."""
    cls: Any = root
    node = data
    for part in loc:
        if (
            not (isinstance(cls, type) and issubclass(cls, BaseModel))
            or part not in cls.model_fields
        ):
            return None
        node = node.get(part) if isinstance(node, dict) else None
        candidates = [
            t
            for t in _unwrap(cls.model_fields[part].annotation)
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if not candidates:
            return None
        if len(candidates) > 1 and isinstance(node, dict):
            tagged = [
                c
                for c in candidates
                if node.get("kind") in typing.get_args(c.model_fields["kind"].annotation)
            ]
            candidates = tagged or candidates
        cls = candidates[0]
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _message(
    err: dict[str, Any], root: type[BaseModel], data: Any, loc: tuple[str | int, ...]
) -> str:
    """The user-facing message of one pydantic error at ``loc``."""
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        parent = model_at(root, data, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see smx config show"
        return f"unknown key '{loc[-1]}'; allowed keys: {allowed}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        return f"unknown kind {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "missing 'kind' (the discriminator that selects the section's type)"
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    if kind == "missing":
        return "required field is missing"
    value = err.get("input")
    if not isinstance(value, dict | list):
        return f"{msg} (got {type(value).__name__} {value!r})"
    return f"{msg} (got a {type(value).__name__})"


def pydantic_issues(
    exc: ValidationError,
    root: type[BaseModel],
    data: Any,
    doc: Any,
    file: str,
    prefix: tuple[str | int, ...] = (),
) -> list[ConfigIssue]:
    """Turn a pydantic ValidationError into :class:`ConfigIssue` items with lines.

    Arguments
    ---------
    exc : ValidationError
        The error raised by ``root.model_validate(data)``.
    root : type[BaseModel]
        The model that validated ``data``.
    data : Any
        The plain data that was validated.
    doc : Any
        The ruamel document ``data`` came from (for the lines).
    file : str
        The config file, named in every issue.
    prefix : tuple[str | int, ...]
        Where ``data`` sits in the document (``("variants", name)`` for a merged variant).

    Returns
    -------
    list[ConfigIssue]
        One issue per pydantic error.
    """
    issues = []
    for err in exc.errors():
        loc = strip_tags(data, tuple(err["loc"]))
        message = _message(err, root, data, loc)
        if err["type"] == "union_tag_invalid":
            loc = (*loc, "kind")
        problem = (err.get("ctx") or {}).get("error")
        if isinstance(problem, FieldProblem):
            loc = loc + tuple(int(p) if p.isdigit() else p for p in problem.field.split("."))
            message = problem.message
        full = prefix + loc
        path = ".".join(str(p) for p in full)
        issues.append(ConfigIssue(file, line_of(doc, full), path, message))
    return issues


def validation_errors(
    root: type[BaseModel], data: Any, doc: Any, path: str | Path
) -> list[ConfigIssue]:
    """Every problem of a config against ``root``; variants are checked one by one.

    Arguments
    ---------
    root : type[BaseModel]
        The model of the config without its ``variants`` (:class:`smx.config.Params`).
    data : Any
        The plain data read by :func:`load_yaml`.
    doc : Any
        The ruamel document read by :func:`load_yaml` (for the lines).
    path : str | Path
        The config file, named in every issue.

    Returns
    -------
    list[ConfigIssue]
        Every problem found (empty for a valid config): the base config's, then each
        variant's, its patch merged into the base ``model``.
    """
    file = str(path)
    base = {k: v for k, v in data.items() if k != "variants"}
    variants = data.get("variants", {})
    try:
        params = root.model_validate(base)
    except ValidationError as exc:
        issues = pydantic_issues(exc, root, base, doc, file)
        params = None
    else:
        issues = []
    if not isinstance(variants, dict):
        issues.append(
            ConfigIssue(
                file,
                line_of(doc, ("variants",)),
                "variants",
                "must map variant names to model patches",
            )
        )
        return issues
    model = params.model.model_dump() if params is not None else None
    for name, patch in variants.items():
        issues += _variant_issues(name, patch, model, doc, file)
    return issues


def _variant_issues(
    name: str, patch: Any, model: dict[str, Any] | None, doc: Any, file: str
) -> list[ConfigIssue]:
    """The problems of variant ``name``: its patch, then the base ``model`` patched by it
    (its ``init`` entry, where the encoder is imported from, is checked on its own)."""
    from smx.config import InitCfg, ModelCfg, deep_merge, variant_problems  # config imports us

    problem = variant_problems(name, patch)
    if problem:
        return [ConfigIssue(file, line_of(doc, ("variants", name)), f"variants.{name}", problem)]
    issues = []
    if "init" in patch:
        try:
            InitCfg.model_validate(patch["init"])
        except ValidationError as exc:
            where = ("variants", name, "init")
            issues += pydantic_issues(exc, InitCfg, patch["init"], doc, file, prefix=where)
    if model is None:  # the base config is invalid: its issues already say so
        return issues
    merged = deep_merge(model, {k: v for k, v in patch.items() if k != "init"})
    try:
        ModelCfg.model_validate(merged)
    except ValidationError as exc:
        issues += pydantic_issues(exc, ModelCfg, merged, doc, file, prefix=("variants", name))
    return issues
