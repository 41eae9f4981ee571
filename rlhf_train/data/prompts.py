"""Prompt datasets: local files or built-in tasks -> ``list[PromptRecord]``; chat-template rendering.

Sources (``load_prompts(source, ...)``):

* ``path/to/file.jsonl`` -- one JSON object per non-blank line;
* ``path/to/file.json`` -- a JSON list of objects;
* ``path/to/file.parquet`` -- a table, one row per record (needs ``pyarrow``);
* ``builtin:<task>`` -- a task of ``rlhf_train.rewards.builtin`` (e.g. ``builtin:arith``):
  ``max_samples`` prompts (512 when ``max_samples`` is 0) generated from ``seed``.

Each record's ``input_key`` value (a string) becomes ``PromptRecord.prompt``; its ``label_key`` value
(converted with ``str``; ``None`` -> ``""``) becomes ``PromptRecord.label``. Files keep their order
(shuffling is the data loader's job) and ``max_samples > 0`` keeps the first ``max_samples``.

Errors are :class:`DatasetError` (a ``ValueError``) with one-line messages that name the file, the
record (line number for ``.jsonl``, 1-based record/row number otherwise), the key and the keys the
record has: missing file, unsupported file type, unreadable/invalid file, empty dataset, a record
without the input key or with a non-string input, and -- when ``require_labels`` is set -- a record
without the label key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

BUILTIN_PROMPT_COUNT = 512
FILE_TYPES = (".jsonl", ".json", ".parquet")


class DatasetError(ValueError):
    """A prompt dataset cannot be used; the message names the source, record and key."""


@dataclass(frozen=True)
class PromptRecord:
    """One prompt: its text (before any chat template) and its label (``""`` when there is none)."""

    prompt: str
    label: str = ""


def load_prompts(
    source: str,
    *,
    input_key: str = "input",
    label_key: str | None = "label",
    max_samples: int = 0,
    seed: int = 0,
    require_labels: bool = False,
) -> list[PromptRecord]:
    """Load prompts from ``source`` (see the module docstring); never returns an empty list.

    ``label_key=None`` ignores labels. Records without ``label_key`` get ``""`` unless
    ``require_labels`` is true, in which case they are an error (use it when the reward needs
    labels, e.g. a verifier). ``seed`` only affects ``builtin:`` sources.
    """
    if max_samples < 0:
        raise DatasetError(f"max_samples must be >= 0 (0 means all), got {max_samples}")
    if source.startswith("builtin:"):
        return _builtin(source, max_samples=max_samples, seed=seed)
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"prompt file '{path.resolve()}' does not exist; pass a .jsonl/.json/.parquet file or builtin:<task>")
    if path.is_dir():
        raise DatasetError(f"prompt source '{path.resolve()}' is a directory; pass a .jsonl, .json or .parquet file")
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise DatasetError(f"prompt file '{path}' has unsupported type {suffix or '(none)'!r}; use one of {', '.join(FILE_TYPES)}")
    records = []
    for where, row in _read_rows(path, suffix):
        records.append(_to_record(row, where, path, input_key, label_key, require_labels))
        if max_samples and len(records) >= max_samples:
            break
    if not records:
        raise DatasetError(f"prompt file '{path}' holds no records")
    return records


def _builtin(source: str, *, max_samples: int, seed: int) -> list[PromptRecord]:
    from rlhf_train.rewards.builtin import BUILTIN_TASKS

    name = source.split(":", 1)[1]
    if name not in BUILTIN_TASKS:
        raise DatasetError(f"unknown built-in dataset {source!r}; known: {', '.join('builtin:' + n for n in sorted(BUILTIN_TASKS))}")
    count = max_samples or BUILTIN_PROMPT_COUNT
    return [PromptRecord(prompt=r["input"], label=r["label"]) for r in BUILTIN_TASKS[name].prompts(count, seed)]


def _read_rows(path: Path, suffix: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, row)``; ``where`` is ``"line N"`` / ``"record N"`` / ``"row N"`` (1-based)."""
    if suffix == ".jsonl":
        try:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield f"line {number}", json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DatasetError(f"prompt file '{path}' line {number} is not valid JSON: {error.msg}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetError(f"cannot read prompt file '{path}': {error}") from None
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetError(f"cannot read prompt file '{path}': {error}") from None
        except json.JSONDecodeError as error:
            raise DatasetError(f"prompt file '{path}' is not valid JSON (line {error.lineno}): {error.msg}") from None
        if not isinstance(data, list):
            raise DatasetError(f"prompt file '{path}' must hold a JSON list of objects, not a {type(data).__name__}")
        for number, row in enumerate(data, start=1):
            yield f"record {number}", row
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetError(f"reading '{path}' needs pyarrow; install it with `pip install pyarrow`") from None
        try:
            table = pq.read_table(path)
        except Exception as error:  # noqa: BLE001 -- any pyarrow failure means the file is unusable
            raise DatasetError(f"cannot read parquet file '{path}': {error}") from None
        for number, row in enumerate(table.to_pylist(), start=1):
            yield f"row {number}", row


def _to_record(row: Any, where: str, path: Path, input_key: str, label_key: str | None, require_labels: bool) -> PromptRecord:
    if not isinstance(row, dict):
        raise DatasetError(f"prompt file '{path}' {where} is a {type(row).__name__}, not an object")
    keys = ", ".join(map(str, row)) or "none"
    if input_key not in row:
        raise DatasetError(f"prompt file '{path}' {where} has no input key {input_key!r}; its keys: {keys}")
    prompt = row[input_key]
    if not isinstance(prompt, str):
        raise DatasetError(
            f"prompt file '{path}' {where}: {input_key!r} is a {type(prompt).__name__}, not a string "
            f"(chat-message lists are not supported; store the text and apply the chat template)"
        )
    label = ""
    if label_key is not None:
        if label_key in row:
            label = "" if row[label_key] is None else str(row[label_key])
        elif require_labels:
            raise DatasetError(f"prompt file '{path}' {where} has no label key {label_key!r}; its keys: {keys}")
    return PromptRecord(prompt=prompt, label=label)


def format_prompt(tokenizer, prompt: str, *, apply_chat_template: bool = False, system_prompt: str | None = None) -> str:
    """The text the policy continues: ``prompt`` itself, or -- with ``apply_chat_template`` -- the
    tokenizer's chat template rendered over ``[system?, user: prompt]`` with the generation prompt.

    Rendered text already holds the template's special tokens (e.g. bos): encode it with
    :func:`prompt_token_ids`, which does not add them twice. Raises :class:`DatasetError` when a
    template is asked for and the tokenizer has none.
    """
    if not apply_chat_template:
        if system_prompt:
            raise DatasetError("a system prompt needs the chat template; enable apply_chat_template")
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise DatasetError(
            f"the tokenizer ({type(tokenizer).__name__}, {getattr(tokenizer, 'name_or_path', '?')!r}) has no chat template; "
            f"turn apply_chat_template off or use a model that has one"
        )
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_token_ids(tokenizer, prompt: str, *, apply_chat_template: bool = False, system_prompt: str | None = None) -> list[int]:
    """Token ids of :func:`format_prompt`'s text. Plain prompts get the tokenizer's own special tokens
    (``add_special_tokens=True``, e.g. bos); templated ones get exactly what the template wrote."""
    text = format_prompt(tokenizer, prompt, apply_chat_template=apply_chat_template, system_prompt=system_prompt)
    return list(tokenizer(text, add_special_tokens=not apply_chat_template)["input_ids"])
