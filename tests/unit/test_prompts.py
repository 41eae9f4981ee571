"""Prompt datasets from files and built-in tasks; chat-template rendering."""

from __future__ import annotations

import json

import pytest

from rlhf_train.data.prompts import (
    BUILTIN_PROMPT_COUNT,
    DatasetError,
    PromptRecord,
    format_prompt,
    load_prompts,
    prompt_token_ids,
)
from rlhf_train.models.tiny import build_tiny_tokenizer

ROWS = [{"input": "1 + 2 =", "label": "3"}, {"input": "4 + 4 =", "label": 8}, {"input": "0 + 0 =", "label": None}]
EXPECTED = [PromptRecord("1 + 2 =", "3"), PromptRecord("4 + 4 =", "8"), PromptRecord("0 + 0 =", "")]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_jsonl_json_parquet_load_the_same(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = write_jsonl(tmp_path / "p.jsonl", ROWS)
    (tmp_path / "p.json").write_text(json.dumps(ROWS))
    pq.write_table(pa.Table.from_pylist([{**r, "label": None if r["label"] is None else str(r["label"])} for r in ROWS]), tmp_path / "p.parquet")
    for name in ("p.jsonl", "p.json", "p.parquet"):
        assert load_prompts(str(tmp_path / name)) == EXPECTED, name
    assert load_prompts(str(jsonl), max_samples=2) == EXPECTED[:2]


def test_custom_keys_blank_lines_and_no_labels(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n\n{"question": "c", "answer": "d"}\n')
    assert load_prompts(str(path), input_key="question", label_key="answer") == [PromptRecord("a", "b"), PromptRecord("c", "d")]
    assert load_prompts(str(path), input_key="question", label_key=None) == [PromptRecord("a"), PromptRecord("c")]
    assert load_prompts(str(path), input_key="question") == [PromptRecord("a"), PromptRecord("c")]  # no "label" key


def test_builtin_source_is_deterministic():
    records = load_prompts("builtin:arith")
    assert len(records) == BUILTIN_PROMPT_COUNT and records == load_prompts("builtin:arith")
    assert load_prompts("builtin:arith", seed=1) != records
    assert len(load_prompts("builtin:copy", max_samples=10)) == 10
    assert all(r.label for r in records)


def test_unknown_builtin():
    with pytest.raises(DatasetError, match="unknown built-in dataset 'builtin:nope'; known: builtin:arith, builtin:copy"):
        load_prompts("builtin:nope")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DatasetError, match=f"prompt file '{tmp_path / 'gone.jsonl'}' does not exist"):
        load_prompts(str(tmp_path / "gone.jsonl"))


def test_empty_dataset(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="e.jsonl' holds no records"):
        load_prompts(str(tmp_path / "e.jsonl"))
    (tmp_path / "e.json").write_text("[]")
    with pytest.raises(DatasetError, match="e.json' holds no records"):
        load_prompts(str(tmp_path / "e.json"))


def test_missing_input_key_names_key_line_and_keys(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"prompt": "x", "label": "y"}])
    with pytest.raises(DatasetError, match=r"bad.jsonl' line 2 has no input key 'input'; its keys: prompt, label"):
        load_prompts(str(path))


def test_missing_label_when_required(tmp_path):
    path = write_jsonl(tmp_path / "nolabel.jsonl", [ROWS[0], {"input": "x"}])
    assert load_prompts(str(path))[1] == PromptRecord("x", "")
    with pytest.raises(DatasetError, match=r"nolabel.jsonl' line 2 has no label key 'label'; its keys: input"):
        load_prompts(str(path), require_labels=True)


def test_json_records_are_numbered(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps([ROWS[0], {"text": "x"}]))
    with pytest.raises(DatasetError, match="r.json' record 2 has no input key 'input'; its keys: text"):
        load_prompts(str(tmp_path / "r.json"))


def test_invalid_content(tmp_path):
    (tmp_path / "j.jsonl").write_text('{"input": "a"}\n{"input": \n')
    with pytest.raises(DatasetError, match="j.jsonl' line 2 is not valid JSON"):
        load_prompts(str(tmp_path / "j.jsonl"))
    (tmp_path / "o.json").write_text('{"input": "a"}')
    with pytest.raises(DatasetError, match="must hold a JSON list of objects, not a dict"):
        load_prompts(str(tmp_path / "o.json"))
    write_jsonl(tmp_path / "m.jsonl", [{"input": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DatasetError, match="m.jsonl' line 1: 'input' is a list, not a string"):
        load_prompts(str(tmp_path / "m.jsonl"))
    write_jsonl(tmp_path / "s.jsonl", ["just a string"])
    with pytest.raises(DatasetError, match="s.jsonl' line 1 is a str, not an object"):
        load_prompts(str(tmp_path / "s.jsonl"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="cannot read parquet file '.*bad.parquet'"):
        load_prompts(str(tmp_path / "bad.parquet"))


def test_unsupported_type_and_directory(tmp_path):
    (tmp_path / "p.csv").write_text("input\n1\n")
    with pytest.raises(DatasetError, match="p.csv' has unsupported type '.csv'; use one of .jsonl, .json, .parquet"):
        load_prompts(str(tmp_path / "p.csv"))
    with pytest.raises(DatasetError, match="is a directory"):
        load_prompts(str(tmp_path))
    with pytest.raises(DatasetError, match="max_samples must be >= 0"):
        load_prompts("builtin:arith", max_samples=-1)


def test_format_prompt_and_token_ids(tok):
    assert format_prompt(tok, "3 + 5 =") == "3 + 5 ="
    assert prompt_token_ids(tok, "3 + 5 =") == tok("3 + 5 =")["input_ids"]
    templated = format_prompt(tok, "3 + 5 =", apply_chat_template=True, system_prompt="add")
    assert templated == "<bos>system : add <eos> user : 3 + 5 = <eos> assistant :"
    ids = prompt_token_ids(tok, "3 + 5 =", apply_chat_template=True)
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids) == "<bos> user : 3 + 5 = <eos> assistant :"


def test_template_errors(tok):
    with pytest.raises(DatasetError, match="a system prompt needs the chat template"):
        format_prompt(tok, "x", system_prompt="be nice")
    bare = build_tiny_tokenizer()
    bare.chat_template = None
    with pytest.raises(DatasetError, match="has no chat template; turn apply_chat_template off"):
        format_prompt(bare, "x", apply_chat_template=True)
