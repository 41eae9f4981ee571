"""`rlhf-train check | schema | new | --help` through the real entry points, in subprocesses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from rlhf_train.config.reference import preset_reference_markdown
from rlhf_train.config.schema import SECTIONS
from tests.conftest import PRESETS, REPO

CONSOLE_SCRIPT = Path(sys.executable).with_name("rlhf-train")
HEAVY = ("torch", "ray", "deepspeed", "vllm", "transformers")


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`python -m rlhf_train.cli ARGS` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-m", "rlhf_train.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def error_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("error:")]


# ---- check -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_check_accepts_every_shipped_preset(path):
    rel = str(path.relative_to(REPO))
    proc = cli("check", rel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{rel}: valid"
    assert error_lines(proc.stdout) == []
    for section in ("roles", "batches", "memory per worker"):
        assert section in lines, section
    assert f"preset {path.stem}: " in proc.stdout


def test_check_json_has_verdict_errors_and_batch_plan():
    proc = cli("check", "presets/gpu8-7b-hybrid.toml", "--json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["preset"] == "presets/gpu8-7b-hybrid.toml"
    assert doc["valid"] is True and doc["errors"] == []
    # 128 samples per step / (8 per micro-batch × 8 actor ranks) = 2 micro-batches per step
    assert doc["plan"]["batch"]["gradient_accumulation_steps"] == 2
    assert doc["plan"]["batch"]["samples_per_rollout"] == 1024
    assert doc["plan"]["gpus_needed"] == 8 and doc["plan"]["gpus_available"] == 8


def test_check_json_of_an_invalid_preset(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("schema_version = 1\n[train]\ntrain_batch_size = 6\n")
    proc = cli("check", str(path), "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["valid"] is False and doc["plan"] is None
    [error] = doc["errors"]
    assert error["key"] == "[train].train_batch_size" and error["value"] == 6
    assert error["message"].startswith("[train].train_batch_size = 6: samples per rollout (8) ")


def test_check_json_of_several_presets_is_a_list():
    proc = cli("check", "presets/gpu8-7b-hybrid.toml", "presets/gpu1-hybrid-0.5b.toml", "--json")
    assert proc.returncode == 0
    docs = json.loads(proc.stdout)
    assert [d["preset"] for d in docs] == ["presets/gpu8-7b-hybrid.toml", "presets/gpu1-hybrid-0.5b.toml"]
    assert all(d["valid"] for d in docs)


BROKEN = """\
schema_version = 1

[train]
rollout_batch_size = 3
train_batch_size = 2
micro_train_batch_size = 1

[rollout]
n_samples_per_promt = 4

[deepspeed]
zero_stage = "three"
"""


def test_check_reports_three_errors_in_three_sections(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    proc = cli("check", str(path))
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[0] == f"{path}: 3 errors"
    errors = error_lines(proc.stdout)
    assert len(errors) == 3
    by_key = {line.split()[1].rstrip(":"): line for line in errors}
    assert set(by_key) == {"[train].train_batch_size", "[rollout].n_samples_per_promt", "[deepspeed].zero_stage"}
    assert by_key["[train].train_batch_size"].startswith("error: [train].train_batch_size = 2: samples per rollout (3)")
    assert by_key["[rollout].n_samples_per_promt"] == "error: [rollout].n_samples_per_promt: unknown key."
    assert by_key["[deepspeed].zero_stage"].startswith('error: [deepspeed].zero_stage = "three": ')
    assert "fix: did you mean [rollout].n_samples_per_prompt?" in proc.stdout


def test_check_of_several_files_fails_if_any_does(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text(BROKEN)
    good = "presets/gpu8-7b-hybrid.toml"
    proc = cli("check", good, str(bad), "presets/gpu1-hybrid-0.5b.toml")
    assert proc.returncode == 2
    assert f"{good}: valid" in proc.stdout.splitlines()
    assert f"{bad}: 3 errors" in proc.stdout.splitlines()
    assert "presets/gpu1-hybrid-0.5b.toml: valid" in proc.stdout.splitlines()
    assert cli("check", good, "presets/gpu1-hybrid-0.5b.toml").returncode == 0


def test_check_of_a_missing_file_and_of_bad_toml(tmp_path):
    proc = cli("check", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2
    assert "does not exist" in proc.stdout
    syntax = tmp_path / "syntax.toml"
    syntax.write_text("schema_version = 1\n[train\n")
    proc = cli("check", str(syntax))
    assert proc.returncode == 2
    assert "is not valid TOML" in proc.stdout


def test_check_without_a_preset_is_a_usage_error():
    proc = cli("check")
    assert proc.returncode == 2
    assert "usage: rlhf-train check" in proc.stderr


def test_check_applies_set_overrides():
    proc = cli("check", "presets/tiny-cpu.toml", "--set", "train.max_steps=20", "--set", "rollout.temperature=0.7")
    assert proc.returncode == 0, proc.stdout
    assert "RL steps                     20  ([train].max_steps)" in proc.stdout
    proc = cli("check", "presets/tiny-cpu.toml", "--set", "train.train_batch_size=100")
    assert proc.returncode == 2
    assert error_lines(proc.stdout)[0].startswith("error: [train].train_batch_size = 100: ")


def test_check_accepts_openrlhf_flag_names():
    # tiny-cpu: 16 prompts × 8 samples = 128 samples; with 4 samples a 64-sample train batch fits
    proc = cli("check", "presets/tiny-cpu.toml", "--set", "n_samples_per_prompt=4",
               "--set=--train_batch_size=64", "--set", "micro_train_batch_size=64")
    assert proc.returncode == 0, proc.stdout
    notes = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("note:")]
    assert notes == [
        "note: --set n_samples_per_prompt: OpenRLHF's n_samples_per_prompt → [rollout].n_samples_per_prompt = 4",
        "note: --set train_batch_size: OpenRLHF's train_batch_size → [train].train_batch_size = 64",
        "note: --set micro_train_batch_size: OpenRLHF's micro_train_batch_size → "
        "[train].micro_train_batch_size = 64",
    ]
    assert "samples per rollout          64 = 16 prompts × 4 samples" in proc.stdout


def test_check_rejects_unknown_override_names():
    proc = cli("check", "presets/tiny-cpu.toml", "--set", "max_step=3")
    assert proc.returncode == 2
    assert error_lines(proc.stdout) == ["error: --set max_step: not a section.key and not a known OpenRLHF flag name."]
    assert "fix: did you mean [train].max_steps?" in proc.stdout


def test_check_survives_unreadable_data_and_model_files(tmp_path):
    (tmp_path / "prompts.json").write_text("{not json")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"hidden_size": 8}')
    proc = cli("check", str(REPO / "presets/gpu8-7b-hybrid.toml"),
               "--set", f"data.prompt_data={json.dumps(str(tmp_path / 'prompts.json'))}",
               "--set", f"model.actor={json.dumps(str(tmp_path / 'model'))}", "--set", "model.size_hint_b=0.0")
    assert proc.returncode == 0, proc.stdout
    assert "RL steps                     depends on the dataset size" in proc.stdout
    assert "model size unknown here" in proc.stdout


# ---- schema ----------------------------------------------------------------------------------

def test_schema_is_json_schema_with_every_section():
    proc = cli("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert set(schema["properties"]) == set(SECTIONS) | {"schema_version"}
    assert schema["additionalProperties"] is False
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert train["rollout_batch_size"]["minimum"] == 1 and train["rollout_batch_size"]["default"] == 8


def test_schema_markdown_is_the_reference():
    proc = cli("schema", "--markdown")
    assert proc.returncode == 0
    assert proc.stdout == preset_reference_markdown() + "\n"
    for section in SECTIONS:
        assert f"### [{section}]" in proc.stdout


# ---- new -------------------------------------------------------------------------------------

def test_new_writes_a_commented_preset_that_checks(tmp_path):
    proc = cli("new", "mine", cwd=tmp_path)
    assert proc.returncode == 0
    path = tmp_path / "mine.toml"
    assert proc.stdout.strip() == "wrote mine.toml; check it with: rlhf-train check mine.toml"
    text = path.read_text()
    doc = tomllib.loads(text)
    assert doc["run"]["name"] == "mine" and doc["schema_version"] == 1
    assert set(doc) == set(SECTIONS) | {"schema_version"}
    # every key has its help comment on the line above
    lines = text.splitlines()
    keys = [i for i, line in enumerate(lines) if line and not line.startswith(("#", "[", "schema_version"))]
    assert len(keys) == sum(len(model.model_fields) for model in SECTIONS.values())
    assert all(lines[i - 1].startswith("# ") and "default" in lines[i - 1] for i in keys)
    check = cli("check", "mine.toml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert check.stdout.splitlines()[0] == "mine.toml: valid"


def test_new_does_not_overwrite_without_force(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("keep me\n")
    proc = cli("new", "mine.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: mine.toml exists; pass --force to overwrite it."
    assert path.read_text() == "keep me\n"
    assert cli("new", "mine.toml", "--force", cwd=tmp_path).returncode == 0
    assert tomllib.loads(path.read_text())["run"]["name"] == "mine"


def test_new_rejects_a_bad_name(tmp_path):
    proc = cli("new", "my preset", cwd=tmp_path)
    assert proc.returncode == 2
    assert "'my preset' is not a valid run name" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# ---- entry points, imports, speed ------------------------------------------------------------

def test_console_script_help():
    script = CONSOLE_SCRIPT if CONSOLE_SCRIPT.exists() else shutil.which("rlhf-train")
    assert script, "the rlhf-train console script is not installed (pip install -e .)"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: rlhf-train ")
    assert "check, schema, new" in proc.stdout
    sub = subprocess.run([str(script), "check", "--help"], capture_output=True, text=True, timeout=60)
    assert sub.returncode == 0 and sub.stdout.startswith("usage: rlhf-train check ")


IMPORT_PROBE = textwrap.dedent("""
    import contextlib, io, json, sys, time
    start = time.perf_counter()
    {imports}
    from rlhf_train.cli import main
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main(["check", "presets/tiny-cpu.toml"])
    elapsed = time.perf_counter() - start
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
    print(json.dumps({{"status": status, "valid": out.getvalue().startswith("presets/tiny-cpu.toml: valid"),
                      "heavy": heavy, "seconds": elapsed}}))
""")


def probe(imports: str) -> dict:
    code = IMPORT_PROBE.format(imports=imports, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_and_plan_import_no_heavy_libraries():
    result = probe("import rlhf_train.cli, rlhf_train.config.plan")
    assert (result["status"], result["valid"]) == (0, True)
    assert result["heavy"] == []


def test_tui_imports_no_heavy_libraries():
    result = probe("import rlhf_train.cli, rlhf_tui")
    assert (result["status"], result["valid"]) == (0, True)
    assert result["heavy"] == []


def test_check_takes_well_under_a_second():
    result = probe("")
    print(f"import + check presets/tiny-cpu.toml: {result['seconds']:.3f} s")
    assert result["status"] == 0
    assert result["seconds"] < 1.0, f"import + check took {result['seconds']:.3f} s"
