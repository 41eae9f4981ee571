"""The preset builder, driven with keys through Pilot: a form for every schema key, live validation
and plan, the headless command line, open / save / save-as keeping comments, the unsaved-changes
prompt and launch."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from textual import on
from textual.app import App
from textual.screen import Screen
from textual.widgets import Button, Input, Select, Switch, TabbedContent

from rlhf_train.config.loader import check_preset, load_preset
from rlhf_train.config.schema import SECTIONS, Preset
from rlhf_train.config.writer import field_choices
from rlhf_tui.components.confirm_modal import ConfirmModal
from rlhf_tui.components.form_field import FormField
from rlhf_tui.components.form_path_modal import PathModal
from rlhf_tui.messages import LaunchRequested
from rlhf_tui.screens.builder import BuilderScreen

from .conftest import REPO, wait_until

TINY = REPO / "presets" / "tiny-cpu.toml"


class BuilderApp(App):
    """Pushes one BuilderScreen and records the LaunchRequested messages it posts."""

    def __init__(self, screen: BuilderScreen) -> None:
        super().__init__()
        self.builder = screen
        self.launches: list[Path] = []

    def on_mount(self) -> None:
        self.push_screen(self.builder)

    @on(LaunchRequested)
    def record_launch(self, message: LaunchRequested) -> None:
        self.launches.append(message.preset_path)


def run(screen: BuilderScreen, scenario, size=(80, 24)) -> BuilderApp:
    """Run `scenario(pilot, app, screen)` once the builder has validated its first preset."""

    async def main() -> BuilderApp:
        app = BuilderApp(screen)
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: screen.is_mounted and screen.plan_text != "", 5, "the builder")
            await scenario(pilot, app, screen)
        return app

    return asyncio.run(main())


async def focus_field(pilot, screen: BuilderScreen, section: str, key: str):
    """Show the field's section and focus its widget (as tab / shift+tab would)."""
    screen.query_one(TabbedContent).active = f"tab-{section}"
    await pilot.pause()
    widget = screen.query_one(f"#input-{section}-{key}")
    widget.focus()
    await pilot.pause()
    return widget


async def type_into(pilot, screen: BuilderScreen, section: str, key: str, text: str) -> None:
    """Replace the text of an Input field by typing."""
    await focus_field(pilot, screen, section, key)
    await pilot.press("end", "ctrl+u", *text)


async def settle(pilot, screen: BuilderScreen) -> None:
    """Wait for the debounced validation and the plan worker to catch up with the keys."""
    await wait_until(pilot, lambda: screen._debounce is None, 3, "validation")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def answer_path(pilot, app: App, path: Path) -> None:
    await wait_until(pilot, lambda: isinstance(app.screen, PathModal), 3, "the path prompt")
    app.screen.query_one(Input).value = str(path)
    await pilot.press("enter")


def shown(widget) -> str:
    """The text a Static shows, brackets and all (the builder's texts are not markup)."""
    return widget.visual.plain


def field(screen: BuilderScreen, section: str, key: str) -> FormField:
    return screen.query_one(f"#field-{section}-{key}", FormField)


def test_every_schema_field_has_a_widget_of_its_type_with_help():
    def expected_widget(info):
        if field_choices(info):
            return Select, None
        return {bool: (Switch, None), int: (Input, "integer"), float: (Input, "number"),
                str: (Input, "text")}.get(info.annotation, (Input, "text"))

    async def scenario(pilot, app, screen):
        assert len(screen.query(FormField)) == sum(len(m.model_fields) for m in SECTIONS.values())
        for section, model in SECTIONS.items():
            for key, info in model.model_fields.items():
                row = field(screen, section, key)
                widget_type, input_type = expected_widget(info)
                widget = row.query_one(f"#input-{section}-{key}")
                assert type(widget) is widget_type, (section, key, widget)
                if input_type is not None:
                    assert widget.type == input_type, (section, key)
                assert shown(row.query_one(".field-help")).startswith(info.description), (section, key)
                assert row.value == info.get_default(call_default_factory=True), (section, key)
        help_text = shown(field(screen, "rollout", "n_samples_per_prompt").query_one(".field-help"))
        assert "(1 ≤ x ≤ 1024; default 1)" in help_text

    run(BuilderScreen(), scenario, size=(160, 48))


def test_build_a_preset_from_scratch_with_keys_and_save_it_as(tmp_path):
    target = tmp_path / "fresh.toml"

    async def scenario(pilot, app, screen):
        assert screen.command is None and "untitled" in shown(screen.query_one("#builder-title"))
        await pilot.press("tab", "ctrl+u", *"fresh")  # from the section tabs to [run].name
        assert screen.focused.id == "input-run-name"
        await focus_field(pilot, screen, "algo", "name")
        await pilot.press("enter", "down", "enter")  # ppo → grpo
        await focus_field(pilot, screen, "algo", "use_kl_loss")
        await pilot.press("space")
        await type_into(pilot, screen, "rollout", "n_samples_per_prompt", "4")
        await settle(pilot, screen)
        assert screen.result.ok, screen.result.errors
        assert screen.plan_text.startswith("preset fresh: grpo (group_norm advantages, KL k1 in loss")
        await pilot.press("f2")
        await answer_path(pilot, app, target)
        await wait_until(pilot, lambda: screen.saved, 3, "the save")
        assert screen.path == target
        assert screen.command == f"rlhf-train {target}"

    run(BuilderScreen(), scenario)
    assert check_preset(target).ok
    assert load_preset(target) == Preset.model_validate({
        "run": {"name": "fresh"}, "algo": {"name": "grpo", "use_kl_loss": True},
        "rollout": {"n_samples_per_prompt": 4}})


def test_a_field_error_shows_beside_the_field_in_the_summary_and_hides_the_plan():
    async def scenario(pilot, app, screen):
        row = field(screen, "rollout", "n_samples_per_prompt")
        await type_into(pilot, screen, "rollout", "n_samples_per_prompt", "0")
        await settle(pilot, screen)
        assert row.has_class("-invalid")
        assert shown(row.query_one(".field-error")) == "✗ input should be greater than or equal to 1."
        summary = shown(screen.query_one("#builder-summary"))
        assert "✗ [rollout].n_samples_per_prompt = 0: input should be greater than or equal to 1." in summary
        assert screen.plan_text == "fix 1 error to see the plan"
        assert "rollout ✗1" in screen.query_one(TabbedContent).get_tab("tab-rollout").label.plain

        await pilot.press("backspace", "2")  # fixed
        await settle(pilot, screen)
        assert not row.has_class("-invalid") and not row.query_one(".field-error").display
        assert shown(screen.query_one("#builder-summary")).strip() == "✓ valid"
        assert screen.plan_text.startswith("preset run: ppo")

        await type_into(pilot, screen, "train", "train_batch_size", "3")  # 16 samples per rollout
        await settle(pilot, screen)
        errors = shown(field(screen, "train", "train_batch_size").query_one(".field-error")).splitlines()
        assert errors[0] == ("✗ samples per rollout (16) must be a whole number of optimizer steps of "
                             "train_batch_size samples. Fix: use a train_batch_size that divides 16 (e.g. 2).")
        assert len(errors) == 3  # and gradient accumulation, for the actor and the critic
        assert screen.plan_text == "fix 3 errors to see the plan"

    run(BuilderScreen(), scenario)


def test_open_a_hand_written_preset_change_one_value_copy_the_command_and_save_keeps_comments(tmp_path):
    preset = tmp_path / "tiny.toml"
    shutil.copy(TINY, preset)
    original = preset.read_text()

    async def scenario(pilot, app, screen):
        await pilot.press("ctrl+o")
        await answer_path(pilot, app, preset)
        await wait_until(pilot, lambda: screen.command == f"rlhf-train {preset}", 3, "the preset to open")
        assert screen.path == preset and screen.saved
        assert field(screen, "train", "max_steps").value == 300
        await type_into(pilot, screen, "train", "max_steps", "50")
        await settle(pilot, screen)
        assert screen.command == f"rlhf-train {preset} --set train.max_steps=50"
        assert shown(screen.query_one("#builder-command")).strip() == f"$ {screen.command}"
        assert "modified: 1 change" in shown(screen.query_one("#builder-title"))
        await pilot.press("ctrl+y")
        assert app.clipboard == screen.command
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: screen.saved, 3, "the save")
        assert screen.command == f"rlhf-train {preset}"

    run(BuilderScreen(), scenario, size=(160, 48))
    assert preset.read_text() == original.replace("max_steps = 300", "max_steps = 50")
    assert "# Built-in tiny Llama learning single-digit addition" in preset.read_text()
    assert load_preset(preset).train.max_steps == 50


def test_escape_with_unsaved_changes_asks_and_keep_editing_stays(tmp_path):
    async def scenario(pilot, app, screen):
        await type_into(pilot, screen, "run", "seed", "7")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 3, "the unsaved-changes prompt")
        assert str(app.screen.query_one("#no", Button).label) == "Keep editing (n)"
        assert "Discard 1 unsaved change?" in shown(app.screen.query_one("#confirm-question"))
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen, 3, "back to the builder")
        assert field(screen, "run", "seed").value == 7
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 3, "the prompt again")
        await pilot.press("y")
        await wait_until(pilot, lambda: type(app.screen) is Screen, 3, "the builder to close")

    run(BuilderScreen(), scenario)


def test_launch_offers_to_save_then_posts_the_saved_path(tmp_path):
    preset = tmp_path / "tiny.toml"
    shutil.copy(TINY, preset)

    async def scenario(pilot, app, screen):
        await type_into(pilot, screen, "train", "max_steps", "20")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), 3, "the save-first prompt")
        assert app.launches == []
        await pilot.press("y")
        await wait_until(pilot, lambda: app.launches == [preset], 3, "LaunchRequested")
        assert load_preset(preset).train.max_steps == 20
        await pilot.press("ctrl+r")  # saved and unchanged: straight away
        await wait_until(pilot, lambda: app.launches == [preset, preset], 3, "a second LaunchRequested")

    run(BuilderScreen(preset), scenario)


def test_launch_refuses_an_invalid_preset():
    async def scenario(pilot, app, screen):
        await type_into(pilot, screen, "rollout", "top_p", "0")  # a float key: must be > 0
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: any("fix 1 error before launching" in n.message
                                            for n in app._notifications), 3, "the refusal")
        assert app.screen is screen and app.launches == []

    run(BuilderScreen(), scenario)


def test_clone_opens_the_source_without_a_path_and_saves_as(tmp_path):
    run_preset = tmp_path / "run" / "preset.toml"
    run_preset.parent.mkdir()
    shutil.copy(TINY, run_preset)
    target = tmp_path / "again.toml"

    async def scenario(pilot, app, screen):
        assert screen.path is None and screen.source == run_preset
        assert shown(screen.query_one("#builder-title")).startswith(f"preset clone of {run_preset}")
        await type_into(pilot, screen, "run", "seed", "2")
        await settle(pilot, screen)
        assert screen.command == f"rlhf-train {run_preset} --set run.seed=2"
        await pilot.press("ctrl+s")  # no path yet: asks for one
        await answer_path(pilot, app, target)
        await wait_until(pilot, lambda: screen.saved, 3, "the save")

    run(BuilderScreen(source=run_preset), scenario)
    assert target.read_text() == TINY.read_text().replace("seed = 1", "seed = 2")
    assert run_preset.read_text() == TINY.read_text()


def test_a_file_that_cannot_be_read_is_named_and_never_overwritten(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("schema_version = [\n")

    async def scenario(pilot, app, screen):
        assert screen.path is None
        assert any(f"{broken} is not valid TOML" in n.message for n in app._notifications)
        await pilot.press("ctrl+o")
        await answer_path(pilot, app, tmp_path / "missing.toml")
        await wait_until(pilot, lambda: any("missing.toml does not exist" in n.message
                                            for n in app._notifications), 3, "the open error")
        assert app.screen is screen and screen.path is None

    run(BuilderScreen(broken), scenario)
    assert broken.read_text() == "schema_version = [\n"
