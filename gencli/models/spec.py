"""What a family declares about itself, torch-free (DESIGN.md, "one shape").

Each family package ``gencli/models/<family>/`` has a ``spec.py`` whose ``SPECS`` tuple holds one
:class:`FamilySpec` per registered name. The registry only collects them; the commands read
everything family-specific from here: the class implementing it, its capabilities, the options it
takes in each command (a small schema, so `gencli sample FAMILY --help` lists them and the CLI
parses and checks them without knowing the family), the data it trains on, its presets and its
named checkpoints.

Importing this module (and a family's spec.py) must not import torch: `gencli --help` and
`gencli models` stay instant.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import Any

from gencli.errors import UsageError

#: Capability names (the commands and API methods they enable). "traverse": a latent traversal
#: grid (`gencli interpolate MODEL --traverse`); "export_onnx": the family's network can be written
#: as an ONNX graph (`gencli export`, ``GenerativeModel.export_onnx``).
CAPABILITIES = ("sample", "interpolate", "encode", "decode", "translate", "log_likelihood", "traverse", "export_onnx")
#: What a family trains on: `gencli train` builds the data through the family's class.
DATA_KINDS = ("images", "labelled images", "paired", "unpaired")
#: The commands whose options a family may extend.
COMMANDS = ("sample", "interpolate", "translate", "train", "export", "log_likelihood")

#: Images per batch when generating without a batch size.
MAX_BATCH = 64

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass(frozen=True)
class Option:
    """One family option: ``--flag VALUE`` on the command line, ``name=value`` in the API.

    ``default`` None means "the model's own default" (often read from the checkpoint's config);
    the option is then not passed at all. ``minimum``/``maximum`` bound numbers (inclusive);
    floats must be finite.
    """

    name: str
    type: str = "str"  # int | float | str | bool
    help: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"option {self.name}: unknown type {self.type!r}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def takes_value(self) -> bool:
        return self.type != "bool"

    @property
    def metavar(self) -> str:
        if self.choices:
            return "|".join(self.choices)
        return {"int": "N", "float": "X", "str": "TEXT", "bool": ""}[self.type]

    def parse(self, text: Any) -> Any:
        """The checked value of ``text`` (a string from the command line, or a Python value)."""
        if self.type == "bool":
            if isinstance(text, bool):
                return text
            low = str(text).strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise UsageError(f"{self.flag} takes no value (or true/false), got {text!r}")
        try:
            value = _TYPES[self.type](text)
        except (TypeError, ValueError):
            kind = {"int": "an integer", "float": "a number", "str": "text"}[self.type]
            raise UsageError(f"{self.flag} must be {kind}, got {text!r}") from None
        if self.type == "int" and isinstance(text, float) and not float(text).is_integer():
            raise UsageError(f"{self.flag} must be an integer, got {text!r}")
        if self.type == "float" and not math.isfinite(value):
            raise UsageError(f"{self.flag} must be a finite number, got {text!r}")
        if self.choices and value not in self.choices:
            raise UsageError(f"{self.flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise UsageError(f"{self.flag} must be at least {_num(self.minimum)}, got {_num(value)}")
        if self.maximum is not None and value > self.maximum:
            raise UsageError(f"{self.flag} must be at most {_num(self.maximum)}, got {_num(value)}")
        return value

    def describe(self) -> str:
        """The help line: the option's help plus its default and range."""
        extra = []
        if self.minimum is not None and self.maximum is not None:
            extra.append(f"{_num(self.minimum)}..{_num(self.maximum)}")
        if self.default is not None:
            extra.append(f"default: {self.default}")
        return self.help + (f" [{'; '.join(extra)}]" if extra else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Checkpoint:
    """A named checkpoint: where its weights come from and in which format.

    ``source``: ``bundled:FILE`` (weights/), ``hf:org/repo[@rev][/path]`` (the Hub) or
    ``url:https://...`` (a plain download). ``format``: ``gencli`` safetensors or a foreign format
    of gencli.formats, converted when loaded.
    """

    name: str
    source: str
    description: str = ""
    format: str = "gencli"
    sha256: str | None = None
    dataset: str = ""


#: Older name, kept for callers of the registry.
CheckpointRef = Checkpoint


@dataclass(frozen=True)
class Preset:
    """Another name for a family with some of its options preset (``ddim`` = ``ddpm`` with
    ``sampler=ddim, steps=50``). A preset shares the family's class and checkpoints."""

    name: str
    description: str
    defaults: dict[str, dict[str, Any]]  # command -> {option: value}


@dataclass(frozen=True)
class FamilySpec:
    """Everything the commands need to know about one registered name."""

    name: str                      # what the user types (a family or a preset)
    target: str                    # "module:Class"
    description: str
    capabilities: tuple[str, ...]
    data: str | None = None        # one of DATA_KINDS, None: not trainable with `gencli train`
    options: dict[str, tuple[Option, ...]] = field(default_factory=dict)  # command -> options
    checkpoints: tuple[Checkpoint, ...] = ()
    default_checkpoint: str | None = None
    presets: tuple[Preset, ...] = ()
    family: str = ""               # the checkpoint family (a preset's base); "" = name
    preset: Preset | None = None   # set on the spec a preset name resolves to
    #: a small config for tests (the contract suite) and examples, and the train options it needs
    tiny_config: dict[str, Any] = field(default_factory=dict)
    tiny_train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name)
        for cap in self.capabilities:
            if cap not in CAPABILITIES:
                raise ValueError(f"{self.name}: unknown capability {cap!r}")
        if self.data is not None and self.data not in DATA_KINDS:
            raise ValueError(f"{self.name}: unknown data kind {self.data!r}")
        for command in self.options:
            if command not in COMMANDS:
                raise ValueError(f"{self.name}: options for unknown command {command!r}")

    # --- the class, lazily ------------------------------------------------------------------
    def load_class(self) -> type:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)

    # --- options ------------------------------------------------------------------------------
    def options_for(self, command: str) -> tuple[Option, ...]:
        return tuple(self.options.get(command, ()))

    def option(self, command: str, name: str) -> Option | None:
        return next((o for o in self.options_for(command) if o.name == name), None)

    def defaults_for(self, command: str) -> dict[str, Any]:
        """The non-None defaults of ``command``'s options (what is passed when not given)."""
        return {o.name: o.default for o in self.options_for(command) if o.default is not None}

    def check_options(self, command: str, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` (name -> value, None = not given) checked against the schema, with the
        defaults filled in: the keyword arguments for the model."""
        out = self.defaults_for(command)
        for name, value in given.items():
            if value is None:
                continue
            opt = self.option(command, name)
            if opt is None:
                raise UsageError(self.unknown_option_message(command, "--" + name.replace("_", "-")))
            out[name] = opt.parse(value)
        return out

    def unknown_option_message(self, command: str, flag: str) -> str:
        have = ", ".join(o.flag for o in self.options_for(command))
        what = f"its options: {have}" if have else "it has no options of its own"
        return (f"{self.name} has no option {flag} for {command}; {what} "
                f"(see `gencli {command} {self.name} --help`)")

    # --- checkpoints --------------------------------------------------------------------------
    def checkpoint(self, name: str) -> Checkpoint:
        for ref in self.checkpoints:
            if ref.name == name:
                return ref
        known = ", ".join(r.name for r in self.checkpoints) or "none"
        raise UsageError(f"{self.name} has no checkpoint named {name!r}; known: {known} "
                         f"(or pass --weights PATH|org/repo)")

    @property
    def is_preset(self) -> bool:
        return self.family != self.name

    @property
    def preset_defaults(self) -> dict[str, dict[str, Any]]:
        """command -> the option defaults this name sets beyond its family's (presets only)."""
        return dict(self.preset.defaults) if self.preset is not None else {}

    def with_preset(self, preset: Preset) -> "FamilySpec":
        """This family under a preset's name, with the preset's option defaults."""
        options = {}
        for command, opts in self.options.items():
            wanted = preset.defaults.get(command, {})
            options[command] = tuple(dataclasses.replace(o, default=wanted[o.name]) if o.name in wanted else o
                                     for o in opts)
        for command, wanted in preset.defaults.items():
            unknown = set(wanted) - {o.name for o in options.get(command, ())}
            if unknown:
                raise ValueError(f"preset {preset.name}: {self.name} has no {command} option {sorted(unknown)}")
        return dataclasses.replace(self, name=preset.name, description=preset.description,
                                   options=options, presets=(), family=self.family,
                                   preset=preset)
