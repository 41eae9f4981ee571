"""The hybrid engine's state machine: the exact transitions of a step for each flag combination,
illegal transitions with their history, and a hung role call turned into an error naming it."""

from __future__ import annotations

import time

import pytest

from rlhf_train.distributed.hybrid import HybridEngine, IllegalTransition, call_with_timeout
from rlhf_train.errors import RunError


class FakeRole:
    """A FAKE of a role (engine, actor or critic) for the state machine alone: it records the
    method calls the machine makes; `hang` makes one method block for that many seconds."""

    def __init__(self, name: str, calls: list[str], hang: tuple[str, float] | None = None) -> None:
        self.name, self.calls, self.hang = name, calls, hang

    def __getattr__(self, method: str):
        def call(*args):
            self.calls.append(f"{self.name}.{method}")
            if self.hang and self.hang[0] == method:
                time.sleep(self.hang[1])
        return call


def machine(engine_sleep: bool, offload: bool, critic: bool = True, timeout_s: float | None = None,
            hang: tuple[str, str, float] | None = None) -> tuple[HybridEngine, list, list]:
    calls: list[str] = []
    events: list[tuple[str, str, str]] = []
    names = ["engine", "actor", "critic"] if critic else ["engine", "actor"]
    roles = {n: FakeRole(n, calls, hang[1:] if hang and hang[0] == n else None) for n in names}
    hybrid = HybridEngine(roles, engine_sleep=engine_sleep, offload=offload,
                          on_state=lambda *e: events.append(e), timeout_s=timeout_s)
    return hybrid, events, calls


def run_step(hybrid: HybridEngine, step: int) -> None:
    """The trainer's order of phases (Trainer.step)."""
    roles = hybrid.roles
    hybrid.begin(step)
    hybrid.generate(roles["engine"].generate)
    hybrid.experience()
    if "critic" in roles:
        hybrid.train("critic", roles["critic"].fit)
    hybrid.train("actor", roles["actor"].fit)
    hybrid.sync(roles["engine"].load_weights)


GENERATE = [("engine", "idle", "generating"), ("engine", "generating", "idle")]
TRAIN_CRITIC = [("critic", "idle", "training"), ("critic", "training", "idle")]
TRAIN_ACTOR = [("actor", "idle", "training"), ("actor", "training", "idle")]


def test_without_sleep_a_step_is_generate_then_train():
    hybrid, events, calls = machine(engine_sleep=False, offload=False)
    run_step(hybrid, 1)
    run_step(hybrid, 2)
    assert events == (GENERATE + TRAIN_CRITIC + TRAIN_ACTOR) * 2
    assert calls == ["engine.generate", "critic.fit", "actor.fit", "engine.load_weights"] * 2


def test_engine_sleep_sleeps_after_generating_and_wakes_for_the_weight_sync():
    hybrid, events, calls = machine(engine_sleep=True, offload=False, critic=False)
    run_step(hybrid, 1)
    run_step(hybrid, 2)
    assert events == (GENERATE + [("engine", "idle", "asleep")] + TRAIN_ACTOR
                      + [("engine", "asleep", "idle")]) * 2
    assert calls == ["engine.generate", "engine.sleep", "actor.fit", "engine.wake_up", "engine.load_weights"] * 2


def test_offload_keeps_states_in_host_memory_while_the_engine_generates():
    hybrid, events, _ = machine(engine_sleep=False, offload=True)
    run_step(hybrid, 1)
    first = len(events)
    run_step(hybrid, 2)
    settle = [("actor", "idle", "offloaded"), ("critic", "idle", "offloaded")]
    step = (GENERATE + [("actor", "offloaded", "idle"), ("critic", "offloaded", "idle")] + TRAIN_CRITIC
            + [("critic", "idle", "offloaded")] + TRAIN_ACTOR + [("actor", "idle", "offloaded")])
    assert events[:first] == settle + step
    assert events[first:] == step


def test_the_full_hybrid_engine_step():
    hybrid, events, calls = machine(engine_sleep=True, offload=True)
    run_step(hybrid, 1)
    del events[:], calls[:]
    run_step(hybrid, 2)
    assert events == [
        ("engine", "idle", "generating"), ("engine", "generating", "idle"), ("engine", "idle", "asleep"),
        ("actor", "offloaded", "idle"), ("critic", "offloaded", "idle"),
        ("critic", "idle", "training"), ("critic", "training", "idle"), ("critic", "idle", "offloaded"),
        ("actor", "idle", "training"), ("actor", "training", "idle"),
        ("engine", "asleep", "idle"), ("actor", "idle", "offloaded")]
    assert calls == ["engine.generate", "engine.sleep", "actor.reload", "critic.reload", "critic.fit",
                     "critic.offload", "actor.fit", "engine.wake_up", "engine.load_weights", "actor.offload"]
    assert hybrid.offload_s > 0


def test_an_illegal_transition_raises_with_the_history():
    hybrid, events, _ = machine(engine_sleep=True, offload=False)
    hybrid.begin(3)
    hybrid.generate(hybrid.roles["engine"].generate)  # leaves the engine asleep
    with pytest.raises(IllegalTransition) as info:
        hybrid.generate(hybrid.roles["engine"].generate)
    err = info.value
    assert [(t.role, t.source, t.target) for t in err.history] == events
    assert (err.attempted.role, err.attempted.source, err.attempted.target) == ("engine", "asleep", "generating")
    assert str(err).startswith("illegal hybrid-engine transition step 3 engine asleep→generating; the last "
                               "transitions: step 3 engine idle→generating, ")
    assert isinstance(err, RunError)
    with pytest.raises(IllegalTransition, match="actor idle→idle"):
        hybrid.move("actor", "idle")


def test_a_hung_role_call_ends_the_step_naming_the_role_and_the_step():
    hybrid, _, _ = machine(engine_sleep=True, offload=True, timeout_s=0.2, hang=("critic", "reload", 5.0))
    started = time.monotonic()
    with pytest.raises(RunError) as info:
        run_step(hybrid, 7)
    assert time.monotonic() - started < 2
    assert str(info.value) == ("step 7: the critic's reload (offloaded→idle) did not finish within 0.2 s "
                               "([placement].phase_timeout_s): a hung worker (e.g. a collective waiting for a "
                               "peer that is gone)")


def test_call_with_timeout_returns_the_value_or_reraises_the_error():
    assert call_with_timeout(lambda a, b: a + b, (2, 3), 1.0, "add") == 5
    assert call_with_timeout(lambda: 4, (), None, "direct") == 4
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, (), 1.0, "divide")


def test_after_move_follows_every_transition_that_moves_memory_and_no_other():
    hybrid, events, _ = machine(engine_sleep=True, offload=True)
    moved: list[tuple[str, str, str]] = []
    hybrid.after_move = lambda *m: moved.append(m)
    run_step(hybrid, 1)
    assert moved == [e for e in events if not {"generating", "training"} & set(e[1:])]
    assert moved == [("actor", "idle", "offloaded"), ("critic", "idle", "offloaded"), ("engine", "idle", "asleep"),
                     ("actor", "offloaded", "idle"), ("critic", "offloaded", "idle"),
                     ("critic", "idle", "offloaded"), ("engine", "asleep", "idle"), ("actor", "idle", "offloaded")]
