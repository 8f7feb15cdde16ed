"""Every config field does something: each leaf of the schema is read by code outside
smx/config.py (an attribute access, its name given to getattr, or a read inside a schema
method that code outside calls), so a setting can never be validated and then silently
ignored."""

from __future__ import annotations

import ast
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from smx.config import Params

SMX = Path(__file__).resolve().parents[1] / "smx"


def leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted path, field name)`` of every leaf field, through every union member."""
    for name, field in model.model_fields.items():
        members = typing.get_args(field.annotation) or (field.annotation,)
        sections = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        for member in typing.get_args(members[0]) if not sections else ():
            if isinstance(member, type) and issubclass(member, BaseModel):
                sections.append(member)
        if sections:
            for section in sections:
                yield from leaves(section, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", name


def names_read() -> set[str]:
    """Attribute names accessed, and string names passed to getattr, outside smx/config.py."""
    read: set[str] = set()
    for path in SMX.rglob("*.py"):
        if path.name == "config.py" and path.parent == SMX:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                read.add(node.attr)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
            ):
                read.add(str(node.args[1].value))
    return read


def read_by_used_methods(read: set[str]) -> set[str]:
    """Attribute names that the schema's own methods read, for the methods code outside
    smx/config.py calls (``FinetuneCfg.stages()``); validators do not count."""
    found: set[str] = set()
    for cls in ast.parse((SMX / "config.py").read_text()).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for method in cls.body:
            if (
                isinstance(method, ast.FunctionDef)
                and method.name in read
                and not method.decorator_list
            ):
                found |= {n.attr for n in ast.walk(method) if isinstance(n, ast.Attribute)}
    return found


def test_every_leaf_field_is_read_outside_the_schema() -> None:
    fields = dict(leaves(Params))
    assert {"model.streaming.enabled", "train.precision", "model.mixer.local_out"} <= set(fields)
    read = names_read()
    read |= read_by_used_methods(read)
    unread = sorted(path for path, name in fields.items() if name not in read)
    assert unread == [], f"config fields that no code outside smx/config.py reads: {unread}"


def test_the_walk_finds_an_unread_field() -> None:
    class Probe(BaseModel):
        surely_unread_setting_xyz: int = 0

    class Root(BaseModel):
        probe: Probe = Probe()

    assert dict(leaves(Root)) == {"probe.surely_unread_setting_xyz": "surely_unread_setting_xyz"}
    assert "surely_unread_setting_xyz" not in names_read()
