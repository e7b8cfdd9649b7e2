"""The commands know no family: no registered name, and no family's option, appears in
gencli/cli/. Everything family-specific comes from the specs (gencli/models/<family>/spec.py)."""

from __future__ import annotations

import re
from pathlib import Path

from gencli import registry

CLI = Path(__file__).resolve().parents[2] / "gencli" / "cli"
#: the modules of the commands that take family options
COMMANDS = {"sample": "sample.py", "interpolate": "interpolate.py", "translate": "translate.py", "train": "train.py",
            "export": "export.py"}


def _sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(CLI.glob("*.py"))}


def test_no_family_name_in_the_commands():
    names = set(registry.FAMILIES)
    for spec in registry.FAMILIES.values():
        names.add(spec.family)
    found = [(module, name) for module, text in _sources().items() for name in sorted(names)
             if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]
    assert not found, f"family names in gencli/cli/: {found}"


def test_no_family_option_in_its_command():
    sources = _sources()
    found = []
    for command, module in COMMANDS.items():
        generic = set(re.findall(r'"(--[\w-]+)"', sources[module]))
        for spec in registry.FAMILIES.values():
            for opt in spec.options_for(command):
                if opt.flag in generic:
                    found.append((module, spec.name, opt.flag))
    assert not found, f"family options declared by commands: {found}"


def test_family_sampling_options_are_not_in_evaluate():
    text = _sources()["evaluate.py"]
    flags = {o.flag for spec in registry.FAMILIES.values() for o in spec.options_for("sample")}
    assert not [f for f in flags if f'"{f}"' in text]
