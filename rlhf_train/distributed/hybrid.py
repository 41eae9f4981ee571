"""The hybrid engine's sequencing: one explicit state machine for what each role holds in memory
during a step, so models sharing GPUs take turns (REFERENCE.md §1–2).

States per role:

- engine: `idle` (awake, weights resident), `generating`, `asleep` (weights released);
- actor, critic: `idle` (DeepSpeed states resident), `training`, `offloaded` (states in host memory).

One step, with every phase the preset enables (`engine_sleep` = `[rollout].enable_sleep`,
`offload` = `[deepspeed].enable_sleep`); a disabled phase is left out:

    begin        actor, critic → offloaded (offload; only where not there already, i.e. step 1)
    generate     engine idle → generating → idle, then → asleep (engine_sleep)
    experience   actor, critic offloaded → idle (offload)
    train critic critic idle → training → idle, then → offloaded (offload)
    train actor  actor idle → training → idle
    sync         engine asleep → idle (engine_sleep: wake; a sleeping HF engine comes back with empty
                 storage), weights actor → engine, then actor → offloaded (offload)

The engine stays awake after the sync: it generates next, and sleeping would drop the weights
just loaded. Every transition emits `on_state(role, from, to)` and its seconds (offload, reload,
sleep, wake) add to `offload_s`; the weight sync's own seconds are returned by `sync`.

A transition the table does not allow raises `IllegalTransition` with the state history. Every role
call made here runs under `timeout_s` (None: called directly, e.g. in-process roles): a call still
running then ends the step with a `RunError` naming the role, what it was doing and the step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from rlhf_train.errors import RunError

T = TypeVar("T")

# (from, to) → the role method that makes the move (None: the state changes around a phase's call)
MOVES: dict[str, dict[tuple[str, str], str | None]] = {
    "engine": {("idle", "generating"): None, ("generating", "idle"): None,
               ("idle", "asleep"): "sleep", ("asleep", "idle"): "wake_up"},
    "model": {("idle", "training"): None, ("training", "idle"): None,
              ("idle", "offloaded"): "offload", ("offloaded", "idle"): "reload"},
}


@dataclass(frozen=True)
class Transition:
    step: int
    role: str
    source: str
    target: str

    def __str__(self) -> str:
        return f"step {self.step} {self.role} {self.source}→{self.target}"


class IllegalTransition(RunError):
    """A move the state table does not allow; `history` holds every transition made before it."""

    def __init__(self, attempted: Transition, history: list[Transition]) -> None:
        self.attempted = attempted
        self.history = list(history)
        recent = ", ".join(str(t) for t in history[-8:]) or "none"
        super().__init__(f"illegal hybrid-engine transition {attempted}; the last transitions: {recent}")


def call_with_timeout(fn: Callable[..., T], args: tuple, timeout_s: float | None, what: str) -> T:
    """`fn(*args)`; with `timeout_s`, in a daemon thread the caller waits on for at most that long
    (a hung call cannot be interrupted, only abandoned), raising `RunError(what …)` past it. The
    call's own exception is re-raised as is."""
    if timeout_s is None:
        return fn(*args)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"hybrid: {what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise RunError(f"{what} did not finish within {timeout_s:g} s ([placement].phase_timeout_s): a hung "
                       "worker (e.g. a collective waiting for a peer that is gone)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class HybridEngine:
    """Drives the engine, actor and (optional) critic through one step's phases (module docstring).

    `roles` maps "engine", "actor" and, when there is one, "critic" to objects with the methods the
    moves name (`sleep`/`wake_up`, `offload`/`reload`). Every role starts `idle`.
    """

    def __init__(self, roles: Mapping[str, Any], *, engine_sleep: bool, offload: bool,
                 on_state: Callable[[str, str, str], None], timeout_s: float | None) -> None:
        self.roles = dict(roles)
        self.engine_sleep = engine_sleep
        self.offload = offload
        self.on_state = on_state
        self.timeout_s = timeout_s
        self.state = {name: "idle" for name in self.roles}
        self.history: list[Transition] = []
        self.after_move: Callable[[str, str, str], None] | None = None
        """Called after every transition that moved memory (sleep, wake, offload, reload), e.g.
        to sample GPU memory right then."""
        self.step = 0
        self.offload_s = 0.0

    @property
    def trained(self) -> list[str]:
        return [name for name in ("actor", "critic") if name in self.roles]

    def call(self, role: str, what: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` for `role` under the phase timeout; a hang names the role, `what` and the step."""
        return call_with_timeout(fn, args, self.timeout_s, f"step {self.step}: the {role}'s {what}")

    def move(self, role: str, target: str) -> None:
        """One transition: checked against `MOVES`, made (the role's method, timed into `offload_s`)
        and reported through `on_state`."""
        attempted = Transition(self.step, role, self.state[role], target)
        moves = MOVES["engine" if role == "engine" else "model"]
        if (attempted.source, target) not in moves:
            raise IllegalTransition(attempted, self.history)
        method = moves[(attempted.source, target)]
        if method is not None:
            t0 = time.perf_counter()
            self.call(role, f"{method} ({attempted.source}→{target})", getattr(self.roles[role], method))
            self.offload_s += time.perf_counter() - t0
        self.state[role] = target
        self.history.append(attempted)
        self.on_state(role, attempted.source, target)
        if method is not None and self.after_move is not None:
            self.after_move(role, attempted.source, target)

    def begin(self, step: int) -> None:
        """Start `step`: reset `offload_s`, and put the trained roles' states in host memory (offload)."""
        self.step = step
        self.offload_s = 0.0
        if self.offload:
            for name in self.trained:
                if self.state[name] != "offloaded":
                    self.move(name, "offloaded")

    def generate(self, fn: Callable[..., T], *args: Any) -> T:
        """The engine generates (`fn(*args)`), then sleeps (engine_sleep)."""
        self.move("engine", "generating")
        out = self.call("engine", "generate", fn, *args)
        self.move("engine", "idle")
        if self.engine_sleep:
            self.move("engine", "asleep")
        return out

    def experience(self) -> None:
        """Bring the trained roles' states back for their forward passes (offload)."""
        if self.offload:
            for name in self.trained:
                self.move(name, "idle")

    def train(self, role: str, fn: Callable[..., T], *args: Any) -> T:
        """`role` trains (`fn(*args)`); the critic's states leave afterwards (offload), the actor's
        stay for the weight sync."""
        self.move(role, "training")
        out = self.call(role, "fit", fn, *args)
        self.move(role, "idle")
        if self.offload and role == "critic":
            self.move(role, "offloaded")
        return out

    def sync(self, fn: Callable[[], None]) -> float:
        """Wake the engine (engine_sleep), push the actor's weights (`fn()`), offload the actor
        (offload); returns the seconds of `fn` alone."""
        if self.engine_sleep:
            self.move("engine", "idle")
        t0 = time.perf_counter()
        self.call("engine", "weight sync", fn)
        seconds = time.perf_counter() - t0
        if self.offload:
            self.move("actor", "offloaded")
        return seconds
