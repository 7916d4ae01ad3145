"""The README's configuration reference cannot drift from the settings classes.

Each table under "Configuration" is checked against the classes of its
component: every variable a class reads is listed with its default (or as
required), and every variable listed is one that the component reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic.fields import FieldInfo

from gateway.settings import GatewaySettings
from pantheon.cli.settings import CliSettings
from pantheon.config import ClientIdentity, KafkaSettings, S3Settings, ServiceSettings, TLSSettings
from pantheon.devstack.variables import StackVariables
from pantheon.envconfig import EnvSettings, LogSettings, variables

README = Path(__file__).resolve().parents[2] / "README.md"

#: The tables of "Configuration", in order, and the classes each documents.
SECTIONS: dict[str, tuple[type[EnvSettings], ...]] = {
    "services": (ServiceSettings, TLSSettings, ClientIdentity, KafkaSettings, S3Settings, LogSettings),
    "gateway": (GatewaySettings, LogSettings),
    "cli": (CliSettings,),
    "stack": (StackVariables,),
}


def _tables() -> list[list[tuple[str, str]]]:
    """(variables cell, default cell) of each row of each table in "Configuration"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    tables: list[list[tuple[str, str]]] = []
    rows: list[tuple[str, str]] | None = None
    for line in section.splitlines():
        if line.startswith("| variable | default |"):
            rows = []
            tables.append(rows)
        elif rows is not None and line.startswith("| ") and not line.startswith("| ---"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows.append((cells[0], cells[1]))
        elif not line.startswith("|"):
            rows = None
    return tables


def _names(cell: str) -> list[str]:
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fields(classes: tuple[type[EnvSettings], ...]) -> dict[str, list[FieldInfo]]:
    """Every field of `classes` by its variable (its first name: fallbacks are another's)."""
    found: dict[str, list[FieldInfo]] = {}
    for cls in classes:
        for field in cls.model_fields.values():
            if names := variables(field):
                found.setdefault(names[0], []).append(field)
    return found


def test_the_reference_has_one_table_per_component() -> None:
    assert len(_tables()) == len(SECTIONS)


@pytest.mark.parametrize(("section", "table"), list(zip(SECTIONS, range(len(SECTIONS)), strict=True)))
def test_each_table_lists_exactly_the_variables_with_their_defaults(section: str, table: int) -> None:
    classes = SECTIONS[section]
    fields = _fields(classes)
    every_name = {name for cls in classes for f in cls.model_fields.values() for name in variables(f)}
    documented: set[str] = set()
    for names_cell, default_cell in _tables()[table]:
        names = _names(names_cell)
        assert names, names_cell
        defaults = re.findall(r"`([^`]*)`", default_cell)
        for i, name in enumerate(names):
            assert name in fields, f"{section}: {name} is documented but no setting reads it"
            documented.add(name)
            found = fields[name]
            if any(f.is_required() for f in found):
                assert default_cell.startswith("required"), f"{section}: {name} is required"
                continue
            default = found[0].default
            if default is None or default is False:
                assert not default_cell.startswith("required"), f"{section}: {name} is optional"
                continue
            assert i < len(defaults) and defaults[i] == _shown(default), (
                f"{section}: {name} defaults to {_shown(default)!r}, the README says {default_cell!r}"
            )
        for name in re.findall(r"`(PANTHEON_[A-Z0-9_]+)`", default_cell):
            assert name in every_name, f"{section}: {name} (a default) is no variable of this component"
    missing = sorted(set(fields) - documented)
    assert not missing, f"{section}: not in the README's table: {missing}"
