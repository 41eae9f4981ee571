"""Our GRPO against TRL's `GRPOTrainer` on identical work, as ratios from one invocation. A
benchmark, not a test: it prints numbers; its last line is one JSON object.

    .venv/bin/python bench/vs_trl.py [--quick] [--steps 60] [--rounds 2] [--warmup 5] [--ray]

Both sides get the same tiny Llama (built once with `save_tiny` and loaded from that directory by
both), its tokenizer, the same prompts in the same order per step (`builtin:arith`, drawn by our
seeded shuffle and handed to TRL in that order), the same reward function (`arith_reward.py`),
16 prompts × 8 samples per step, 3 new tokens at most, temperature 1, top-p 1, no top-k, k3 KL in
the loss with β = 0.001, AdamW lr 3e-4 (β = 0.9/0.95, no decay, clip 1.0), PPO clip 0.2,
token-mean loss, group-normalised advantages, one optimizer step per rollout. Ours runs through
`rlhf-train` with a generated preset (`placement.mode = "local"`; `--ray` adds one Ray-mode run);
TRL runs in `bench/.venv-trl`, a venv that adds `trl` and its own dependencies on top of `.venv`'s
packages (so torch and transformers are the very same) and leaves `.venv` untouched; the script
creates it on first use. Each side is its own process, run alternately, so peak RSS is per side; both get the same
`OMP_NUM_THREADS` (`--threads`, default 1).

Honesty (`equal_work.py`): prompt token ids are checked equal under both tokenisations; every step
of every run must score exactly 128 samples (counted by the reward function), each side must report
the same token budget, and both reward curves are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from equal_work import SideRun, Work, check_equal_work, curve, figures, ratios  # noqa: E402

TRL_VERSION = "1.16.0"
TRL_VENV = BENCH / ".venv-trl"


def trl_python() -> Path:
    """The TRL venv's python, creating the venv when missing: a plain venv whose `.pth` adds
    `.venv`'s site-packages after its own, then `pip install trl==TRL_VERSION` constrained to every
    version `.venv` holds (pip fails rather than change one)."""
    python = TRL_VENV / "bin" / "python"
    probe = [str(python), "-c", f"import trl; assert trl.__version__ == {TRL_VERSION!r}"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"setting up {TRL_VENV.relative_to(REPO)} (trl=={TRL_VERSION} over .venv's packages) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(TRL_VENV)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    main_site = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_rlhf_main_venv.pth").write_text(f"import site; site.addsitedir({main_site!r})\n")
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout
    constraints = TRL_VENV / "constraints.txt"
    constraints.write_text("".join(line + "\n" for line in frozen.splitlines() if "==" in line))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints), f"trl=={TRL_VERSION}"],
                   check=True)
    subprocess.run(probe, check=True)
    return python


def run_child(cmd: list[str], env: dict[str, str], log: Path) -> int:
    """Run `cmd` to completion (output to `log`); its peak RSS in bytes (from wait4's rusage)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}); end of {log}:\n{tail}")
    return usage.ru_maxrss * 1024


def reward_log(path: Path) -> tuple[list[int], list[float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r["n"] for r in rows], [r["sum"] for r in rows]


def preset_text(work: Work, model: Path, prompts: Path, mode: str) -> str:
    """Our preset for `work` (the tiny preset's shape, every compared setting spelled out)."""
    samples = work.samples_per_step
    return f"""schema_version = 1
[run]
name = "vs-trl"
seed = {work.seed}
[model]
actor = "{model}"
[data]
prompt_data = "{prompts}"
max_prompt_len = 16
[rollout]
engine = "hf"
n_samples_per_prompt = {work.samples_per_prompt}
max_new_tokens = {work.max_new_tokens}
temperature = {work.temperature}
top_p = {work.top_p}
top_k = -1
[algo]
name = "grpo"
kl_estimator = "k3"
use_kl_loss = true
kl_coef = {work.kl_coef}
clip_eps_low = {work.clip_eps}
clip_eps_high = {work.clip_eps}
loss_agg = "token"
[train]
max_steps = {work.steps}
rollout_batch_size = {work.prompts_per_step}
train_batch_size = {samples}
micro_train_batch_size = {samples}
micro_rollout_batch_size = {samples}
max_epochs = 1
actor_lr = {work.lr}
lr_warmup_ratio = 0.0
lr_scheduler = "constant"
weight_decay = 0.0
adam_beta1 = {work.adam_beta1}
adam_beta2 = {work.adam_beta2}
max_norm = {work.max_norm}
[placement]
mode = "{mode}"
[reward]
kind = "function"
function = "{BENCH / 'arith_reward.py'}:arith_reward"
[checkpoint]
save_steps = 0
"""


def run_ours(work: Work, root: Path, tag: str, model: Path, prompts: Path, mode: str = "local") -> SideRun:
    from rlhf_train.telemetry.protocol import read_events_file

    preset = root / f"{tag}.toml"
    preset.write_text(preset_text(work, model, prompts, mode))
    run_dir, rewards = root / tag, root / f"{tag}-rewards.jsonl"
    env = {**os.environ, "BENCH_REWARD_LOG": str(rewards)}
    rss = run_child([sys.executable, "-m", "rlhf_train.cli", str(preset), "--run-dir", str(run_dir)], env,
                    root / f"{tag}.log")
    metrics = [e.get("values") for e in read_events_file(run_dir / "events.jsonl") if e.type == "metric"]
    resolved = _toml(run_dir / "preset.toml")
    samples = resolved["train"]["rollout_batch_size"] * resolved["rollout"]["n_samples_per_prompt"]
    budget = {"samples_per_step": samples, "samples_per_prompt": resolved["rollout"]["n_samples_per_prompt"],
              "max_new_tokens": resolved["rollout"]["max_new_tokens"],
              "optimizer_steps_per_rollout": samples * resolved["train"]["max_epochs"]
              // resolved["train"]["train_batch_size"]}
    scored, sums = reward_log(rewards)
    phases = {k: [m[k] for m in metrics] for k in ("time/generate_s", "time/make_experience_s", "time/train_s",
                                                   "time/weight_sync_s")}
    return SideRun(f"ours ({mode})", [m["perf/step_s"] for m in metrics], scored, sums,
                   [m["rollout/response_length"] for m in metrics], budget, rss, {"phases": phases})


def run_trl(work: Work, root: Path, tag: str, model: Path, ordered: list[dict], python: Path) -> SideRun:
    spec, result, rewards = root / f"{tag}.json", root / f"{tag}-result.json", root / f"{tag}-rewards.jsonl"
    spec.write_text(json.dumps({**work.as_dict(), "model": str(model), "prompts": ordered,
                                "out_dir": str(root / tag)}))
    env = {**os.environ, "BENCH_REWARD_LOG": str(rewards), "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    rss = run_child([str(python), str(BENCH / "trl_grpo.py"), str(spec), str(result)], env, root / f"{tag}.log")
    out = json.loads(result.read_text())
    scored, sums = reward_log(rewards)
    return SideRun("trl", out["step_s"], scored, sums, out["mean_length"], out["budget"], rss)


def _toml(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def prepare(work: Work, root: Path) -> tuple[Path, Path, list[dict]]:
    """Save the model once; write the prompt file ours reads; return the prompts in the order our
    trainer draws them (the order TRL is given); check both sides tokenise them alike."""
    from rlhf_train.data.prompts import load_prompts, prompt_token_ids
    from rlhf_train.models.tiny import build_tiny_tokenizer, save_tiny
    from rlhf_train.trainer import prompt_batches

    model = save_tiny(root / "model", seed=work.seed)
    records = load_prompts("builtin:arith", seed=work.seed)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"input": r.prompt, "label": r.label}) + "\n" for r in records))
    batches = prompt_batches(load_prompts(str(prompts)), work.prompts_per_step, work.seed)
    ordered = [{"prompt": r.prompt, "label": r.label} for _ in range(work.steps) for r in next(batches)]
    tokenizer = build_tiny_tokenizer()
    for r in ordered:
        ours, theirs = prompt_token_ids(tokenizer, r["prompt"]), tokenizer(text=r["prompt"])["input_ids"]
        if ours != theirs or len(ours) > 16:
            raise SystemExit(f"prompt {r['prompt']!r} tokenises differently: ours {ours}, TRL's {theirs}")
    return model, prompts, ordered


def show(name: str, f: dict[str, float]) -> None:
    print(f"{name:12s} {f['s_per_step'] * 1000:8.1f} ms/step  {f['samples_per_s']:8.1f} samples/s  "
          f"{f['tokens_per_s']:8.1f} tokens/s ({f['mean_length']:.2f}/sample)  peak RSS {f['peak_rss_mib']:7.0f} MiB  "
          f"reward: mean {f['reward_mean']:.3f}, last 10% of steps {f['reward_final']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 steps, 1 round, 3 warm-up steps (< 5 min)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of each side (OMP_NUM_THREADS, the same for both; 1 keeps a shared "
                             "machine's noise down)")
    parser.add_argument("--ray", action="store_true", help="also one run of ours with placement.mode = ray")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds, args.warmup = 20, 1, 3
    work = Work(steps=args.steps)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by both sides' processes
    started = time.perf_counter()
    python = trl_python()
    runs: dict[str, list[SideRun]] = {"ours": [], "trl": []}
    with tempfile.TemporaryDirectory(prefix="vs-trl-") as tmp:
        root = Path(tmp)
        model, prompts, ordered = prepare(work, root)
        for r in range(args.rounds):
            for side in (("ours", "trl") if r % 2 == 0 else ("trl", "ours")):
                t0 = time.perf_counter()
                run = (run_ours(work, root, f"ours-{r}", model, prompts) if side == "ours"
                       else run_trl(work, root, f"trl-{r}", model, ordered, python))
                runs[side].append(run)
                print(f"round {r} {side:4s}: {time.perf_counter() - t0:5.1f} s wall, median step "
                      f"{sorted(run.step_s)[len(run.step_s) // 2] * 1000:.1f} ms", flush=True)
        ray_run = run_ours(work, root, "ours-ray", model, prompts, mode="ray") if args.ray else None
    check_equal_work(work, runs["ours"] + runs["trl"] + ([ray_run] if ray_run else []))
    print(f"\nequal work: {work.steps} steps × {work.samples_per_step} samples scored per step on every run, "
          f"budget {work.budget()} on both sides\n")
    ours, theirs = figures(work, runs["ours"], args.warmup), figures(work, runs["trl"], args.warmup)
    show("ours (local)", ours)
    show("trl", theirs)
    print("\nreward curves (mean reward per sample, steps in 10 buckets, averaged over rounds):")
    for side in ("ours", "trl"):
        rounds = [curve(run.rewards, 10) for run in runs[side]]
        print(f"  {side:5s}" + " ".join(f"{sum(c) / len(c):.3f}" for c in zip(*rounds)))
    phases = runs["ours"][0].extra["phases"]
    print("ours, median per phase: " + ", ".join(
        f"{k.split('/')[1][:-2]} {sorted(v)[len(v) // 2] * 1000:.1f} ms" for k, v in phases.items()))
    result = {**ratios(ours, theirs), "steps": work.steps, "rounds": args.rounds, "warmup": args.warmup,
              "samples_per_step": work.samples_per_step, "ours": ours, "trl": theirs}
    if ray_run is not None:
        ray = figures(work, [ray_run], args.warmup)
        show("ours (ray)", ray)
        result["ray_samples_per_s_ratio"] = ray["samples_per_s"] / theirs["samples_per_s"]
    r = result
    print(f"\nours ÷ TRL: samples/s ×{r['samples_per_s_ratio']:.2f}, tokens/s ×{r['tokens_per_s_ratio']:.2f}, "
          f"s/step ×{r['s_per_step_ratio']:.2f}, peak RSS ×{r['peak_rss_ratio']:.2f}, final reward "
          f"{r['reward_final_diff']:+.3f}" + (f"; ray mode samples/s ×{r['ray_samples_per_s_ratio']:.2f}"
                                              if ray_run else "") + f"  ({time.perf_counter() - started:.0f} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
