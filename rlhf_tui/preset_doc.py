"""A preset file as the builder edits it: the TOML text read from disk, the values it gives every
schema key, the keys a form changes, and the text a save writes — comments and layout kept.

Torch-free and Textual-free. Values are "raw" TOML values (`{section: {key: value}}`), the shape
`validate_preset_dict` takes; a form value that does not fit its key's type (text in an integer
field) is kept as-is so that validation names it.

A new preset starts from `rlhf-train new`'s text (`preset_to_toml(..., commented=True)`): every key
with its help, range and default, so a saved new preset keeps keys equal to their defaults,
documented. A save sets only the changed keys in the original document (tomlkit), so an unchanged
save is byte-identical and a hand-written preset keeps its comments.
"""

from __future__ import annotations

import copy
import os
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from rlhf_train.config.issues import toml_value
from rlhf_train.config.schema import SECTIONS, Preset
from rlhf_train.config.writer import preset_to_toml

Values = dict[str, dict[str, object]]
"""`{section: {key: value}}` for every key of the schema."""
Change = tuple[str, str, object]
"""`(section, key, new value)`."""

NEW_TITLE = "rlhf-train preset (written by rlhf-tui; every key with its help, range and default)"


class PresetDocError(ValueError):
    """A preset file cannot be opened or saved; the message names the file and the reason."""


def same_value(a: object, b: object) -> bool:
    """Equal as TOML values: `1 == 1.0` (an integer in a float key), but `true` is not `1`."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _plain_table(raw: dict, section: str) -> dict:
    """`raw[section]` as a dict, replacing a non-table value (which validation reported)."""
    if not isinstance(raw.get(section), dict):
        raw[section] = {}
    return raw[section]


@dataclass(frozen=True)
class PresetDoc:
    """The text of a preset and where it came from (`origin`: the file it was read from; None for a
    new preset from the schema defaults, which is on no disk)."""

    text: str
    origin: Path | None = None
    raw: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            raw = tomlkit.parse(self.text).unwrap()
        except TOMLKitError as exc:
            where = self.origin or "the preset"
            raise PresetDocError(f"{where} is not valid TOML: {exc}") from exc
        object.__setattr__(self, "raw", raw)

    @classmethod
    def new(cls) -> PresetDoc:
        """A new preset: every key at its default, commented as by `rlhf-train new`."""
        return cls(preset_to_toml(Preset(), commented=True, title=NEW_TITLE))

    @classmethod
    def read(cls, path: Path) -> PresetDoc:
        """The preset file at `path`; `PresetDocError` when it is missing, unreadable or not TOML."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise PresetDocError(f"{path} does not exist") from exc
        except IsADirectoryError as exc:
            raise PresetDocError(f"{path} is a directory, not a preset file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise PresetDocError(f"cannot read {path}: {exc}") from exc
        return cls(text, origin=path)

    def base(self) -> Values:
        """The value this document gives every schema key: as written, else the key's default."""
        out: Values = {}
        for section, model in SECTIONS.items():
            table = self.raw.get(section)
            table = table if isinstance(table, dict) else {}
            out[section] = {key: table[key] if key in table else info.get_default(call_default_factory=True)
                            for key, info in model.model_fields.items()}
        return out

    def changes(self, values: Values) -> list[Change]:
        """The keys whose value in `values` differs from this document's, in schema order."""
        base = self.base()
        return [(section, key, value) for section, table in values.items() for key, value in table.items()
                if not same_value(value, base[section][key])]

    def merged(self, changes: list[Change]) -> dict:
        """This document's raw values with `changes` applied: what a save would write, for validation
        (keys the form does not show, like a misspelt one, stay and are reported)."""
        raw = copy.deepcopy(self.raw)
        for section, key, value in changes:
            _plain_table(raw, section)[key] = value
        return raw

    def render(self, changes: list[Change]) -> str:
        """The document's text with `changes` set in place: comments and layout kept, a key missing
        from its table appended to it, a missing table appended to the file."""
        doc = tomlkit.parse(self.text)
        for section, key, value in changes:
            table = doc.get(section)
            if not isinstance(table, dict):
                doc[section] = table = tomlkit.table()
            table[key] = value
        return tomlkit.dumps(doc)

    def saved_to(self, path: Path, changes: list[Change]) -> PresetDoc:
        """Write the document with `changes` to `path` (atomically) and return it as now on disk."""
        text = self.render(changes)
        write_atomic(path, text)
        return PresetDoc(text, origin=path)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory, so a failed write
    never leaves half a preset; `PresetDocError` names the reason."""
    if not path.parent.is_dir():
        raise PresetDocError(f"cannot save {path}: directory {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise PresetDocError(f"cannot save {path}: {exc.strerror or exc}") from exc


def override_args(changes: list[Change]) -> list[str]:
    """`section.key=value` for `rlhf-train --set`, values in TOML syntax."""
    return [f"{section}.{key}={toml_value(value)}" for section, key, value in changes]


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it lies under it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def command_line(path: Path, changes: list[Change]) -> str:
    """The headless command that runs the preset file at `path` with `changes` applied, shell-quoted."""
    words = ["rlhf-train", shlex.quote(display_path(path))]
    for arg in override_args(changes):
        words += ["--set", shlex.quote(arg)]
    return " ".join(words)
