"""The preset builder: a form generated from the schema, the whole preset validated as you type, the
pre-flight plan `rlhf-train check` prints, and the exact headless command line — then save (comments
of a hand-written preset kept) and launch.

`BuilderScreen(path)` edits the preset file at `path` (a new preset from the schema defaults when the
file does not exist yet; `None`: untitled). `BuilderScreen(source=run/preset.toml)` opens that file's
content with no path: the user must save it as a new preset ("clone and edit").

Keys: ctrl+s save · f2 (or ctrl+shift+s) save as · ctrl+o open · ctrl+y copy the command line ·
ctrl+r launch (valid and saved first; posts `LaunchRequested`, the app launches) · escape back
(asks before dropping unsaved changes). Tab / shift+tab move between fields, left / right between
sections when the section tabs have focus.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from rlhf_train.config.issues import PresetIssue, key_name
from rlhf_train.config.loader import LoadResult, validate_preset_dict
from rlhf_train.config.plan import make_plan
from rlhf_train.config.schema import SECTIONS, Preset
from rlhf_tui.components.confirm_modal import ConfirmModal
from rlhf_tui.components.form_field import FormField
from rlhf_tui.components.form_path_modal import PathModal
from rlhf_tui.messages import LaunchRequested
from rlhf_tui.preset_doc import Change, PresetDoc, PresetDocError, Values, command_line, display_path

DEBOUNCE_S = 0.25
"""Validation runs this long after the last keystroke."""


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def field_message(issue: PresetIssue, field: FormField) -> str:
    """An error as shown under its field: the rule, and the fix unless it only repeats the help."""
    repeats_help = issue.fix in ("", f"{field.key}: {field.info.description}")
    return issue.rule if repeats_help else f"{issue.rule} Fix: {issue.fix}"


class BuilderScreen(Screen):
    CSS_PATH = "builder.tcss"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("f2,ctrl+shift+s", "save_as", "Save as"),
        Binding("ctrl+o", "open", "Open"),
        Binding("ctrl+y", "copy_command", "Copy cmd"),
        Binding("ctrl+r", "launch", "Launch"),
        Binding("escape", "leave", "Back"),
    ]

    def __init__(self, path: Path | None = None, *, source: Path | None = None) -> None:
        super().__init__()
        self.path: Path | None = None
        """Where ctrl+s writes; None until the preset is saved as something."""
        self.source: Path | None = Path(source) if source is not None else None
        """The file a clone was opened from (None once another file is opened)."""
        self.doc = PresetDoc.new()
        """The text the form started from (and its file): what changes are measured against."""
        self.changes: list[Change] = []
        self.result = LoadResult(preset=None)
        self.command: str | None = None
        """The headless command line for the form as it is, None while the preset is on no disk."""
        self.plan_text = ""
        self._open_error = ""
        self._generation = 0
        self._debounce: Timer | None = None
        self.fields: dict[str, FormField] = {}
        """The form's rows by `[section].key`."""
        try:
            if self.source is not None:
                self.doc = PresetDoc.read(self.source)
            elif path is not None:
                self.path = Path(path)
                if self.path.exists():
                    self.doc = PresetDoc.read(self.path)
        except PresetDocError as exc:
            self.path = self.source = None  # never let ctrl+s overwrite a file that could not be read
            self._open_error = f"{exc}; starting a new preset instead"

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        base = self.doc.base()
        yield Static(id="builder-title", markup=False)
        with Horizontal(id="builder-body"):
            with TabbedContent(id="builder-form"):
                for section, model in SECTIONS.items():
                    with TabPane(section, id=f"tab-{section}"):
                        with VerticalScroll(classes="form-scroll", can_focus=False):
                            for key, info in model.model_fields.items():
                                yield FormField(section, key, info, base[section][key])
            with Vertical(id="builder-side"):
                with VerticalScroll(id="builder-summary-box"):
                    yield Static(id="builder-summary", markup=False)
                with VerticalScroll(id="builder-plan-box"):
                    yield Static(id="builder-plan", markup=False)
        yield Static(id="builder-command", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        if self._open_error:
            self.notify(self._open_error, severity="error", timeout=10)
        self._form_ready()

    def _form_ready(self) -> None:
        """Index the freshly composed form and validate it."""
        self.fields = {key_name(f.section, f.key): f for f in self.query(FormField)}
        self.query_one("#builder-plan-box").border_title = "plan (rlhf-train check)"
        self.revalidate()

    # -- live validation -------------------------------------------------------------------------

    @on(FormField.Changed)
    def field_changed(self) -> None:
        if not self.fields:  # a row of a form being replaced
            return
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(DEBOUNCE_S, self.revalidate)

    def values(self) -> Values:
        """The form's values, `{section: {key: value}}`, for every schema key."""
        out: Values = {section: {} for section in SECTIONS}
        for field in self.fields.values():
            out[field.section][field.key] = field.value
        return out

    @property
    def saved(self) -> bool:
        """The form equals the file at `path` on disk."""
        return self.path is not None and self.doc.origin == self.path and not self.changes

    def _stop_pending(self) -> None:
        """Drop a debounced validation and any plan still being made."""
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
        self._generation += 1
        self.workers.cancel_group(self, "plan")

    def revalidate(self) -> None:
        """Validate the whole preset as a save would write it, and redraw everything that follows."""
        self._stop_pending()
        self.changes = self.doc.changes(self.values())
        self.result = validate_preset_dict(self.doc.merged(self.changes))
        self.command = command_line(self.doc.origin, self.changes) if self.doc.origin is not None else None
        self._show_errors()
        self._show_title()
        self.query_one("#builder-command", Static).update(
            f"$ {self.command}" if self.command is not None
            else "$ rlhf-train … — save the preset (ctrl+s / f2) to get its command line")
        if self.result.preset is not None:
            self.compute_plan(self.result.preset, self._generation)
        else:
            self._show_plan(f"fix {plural(len(self.result.errors), 'error')} to see the plan", self._generation)

    def _show_errors(self) -> None:
        per_field: dict[str, list[PresetIssue]] = defaultdict(list)
        for issue in self.result.errors:
            per_field[".".join(issue.key.split(".")[:2])].append(issue)  # `[reward].urls.0` is `[reward].urls`
        per_section: dict[str, int] = defaultdict(int)
        for where, field in self.fields.items():
            issues = per_field.get(where, [])
            field.set_errors([field_message(issue, field) for issue in issues])
            per_section[field.section] += len(issues)
        tabs = self.query_one(TabbedContent)
        for section in SECTIONS:
            n = per_section[section]
            label = f"{section} ✗{n}" if n else section
            tab = tabs.get_tab(f"tab-{section}")
            if tab.label.plain != label:
                tab.label = label
        lines = [f"✗ {issue.render()}" for issue in self.result.errors]
        lines += [f"! {issue.render()}" for issue in self.result.warnings]
        self.query_one("#builder-summary", Static).update("\n".join(lines) or "✓ valid")
        box = self.query_one("#builder-summary-box")
        box.set_class(bool(self.result.errors), "-errors")
        box.border_title = (f"problems: {plural(len(self.result.errors), 'error')}, "
                                f"{plural(len(self.result.warnings), 'warning')}")

    def _show_title(self) -> None:
        if self.path is not None:
            name = display_path(self.path)
        elif self.doc.origin is not None:
            name = f"clone of {display_path(self.doc.origin)} (save as: f2)"
        else:
            name = "untitled (save as: f2)"
        if self.saved:
            state = "saved"
        elif self.changes:
            state = f"modified: {plural(len(self.changes), 'change')}"
        else:
            state = "not saved yet" if self.path is not None else ""
        self.query_one("#builder-title", Static).update(f"preset {name}" + (f" — {state}" if state else ""))

    @work(thread=True, exclusive=True, group="plan")
    def compute_plan(self, preset: Preset, generation: int) -> None:
        """`make_plan` off the UI thread: it may read a prompt file or a model's header."""
        try:
            text = make_plan(preset).render()
        except Exception as exc:  # noqa: BLE001 - a plan bug must show as a message, not end the editor
            text = f"cannot make the plan: {exc}"
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_plan, text, generation)

    def _show_plan(self, text: str, generation: int) -> None:
        if generation == self._generation:
            self.plan_text = text
            self.query_one("#builder-plan", Static).update(text)

    # -- files -----------------------------------------------------------------------------------

    def save_to(self, path: Path) -> bool:
        """Write the form to `path` (only changed keys touched); True when written."""
        self.revalidate()
        try:
            self.doc = self.doc.saved_to(path, self.changes)
        except PresetDocError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return False
        self.path = path
        self.revalidate()
        if self.result.errors:
            self.notify(f"saved {display_path(path)} with {plural(len(self.result.errors), 'error')}: "
                        "`rlhf-train check` will reject it", severity="warning")
        else:
            self.notify(f"saved {display_path(path)}")
        return True

    async def ask_save_as(self) -> bool:
        """Ask for a path (".toml" added when it has no suffix), confirm an overwrite, save."""
        suggestion = str(self.path) if self.path is not None else self._suggested_path()
        answer = await self.app.push_screen_wait(PathModal("Save preset as", suggestion))
        if answer is None:
            return False
        path = answer if answer.suffix else answer.with_suffix(".toml")
        is_current = self.path is not None and path.resolve() == self.path.resolve()
        if path.exists() and not is_current and not await self.app.push_screen_wait(
                ConfirmModal(f"{display_path(path)} exists. Overwrite it?", yes="Overwrite")):
            return False
        return self.save_to(path)

    def _suggested_path(self) -> str:
        name = self.values()["run"]["name"]
        stem = name if isinstance(name, str) and name else "preset"
        return f"presets/{stem}.toml" if Path("presets").is_dir() else f"{stem}.toml"

    async def may_discard(self) -> bool:
        """True when there are no unsaved changes, or the user agrees to drop them."""
        self.revalidate()
        if not self.changes:
            return True
        return await self.app.push_screen_wait(ConfirmModal(
            f"Discard {plural(len(self.changes), 'unsaved change')}?", yes="Discard", no="Keep editing"))

    async def open_file(self, path: Path) -> None:
        """Replace the form with the preset at `path` (the caller has dealt with unsaved changes)."""
        try:
            doc = PresetDoc.read(path)
        except PresetDocError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self._stop_pending()
        self.fields = {}
        self.doc, self.path, self.source = doc, path, None
        await self.recompose()
        self._form_ready()

    # -- actions ---------------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.path is None:
            self.action_save_as()
        else:
            self.save_to(self.path)

    @work(exclusive=True, group="dialog")
    async def action_save_as(self) -> None:
        await self.ask_save_as()

    @work(exclusive=True, group="dialog")
    async def action_open(self) -> None:
        answer = await self.app.push_screen_wait(PathModal("Open preset", str(self.path or "")))
        if answer is not None and await self.may_discard():
            await self.open_file(answer)

    @work(exclusive=True, group="dialog")
    async def action_leave(self) -> None:
        if await self.may_discard():
            self.app.pop_screen()

    def action_copy_command(self) -> None:
        self.revalidate()
        if self.command is None:
            self.notify("save the preset first (ctrl+s / f2): it has no file to run yet", severity="warning")
            return
        self.app.copy_to_clipboard(self.command)
        self.notify(f"copied: {self.command}")

    @work(exclusive=True, group="dialog")
    async def action_launch(self) -> None:
        """Launch needs a valid preset saved to disk: offer to save, then post `LaunchRequested`."""
        self.revalidate()
        if self.result.errors:
            self.notify(f"fix {plural(len(self.result.errors), 'error')} before launching", severity="error")
            return
        if not self.saved:
            target = display_path(self.path) if self.path is not None else "the preset"
            if not await self.app.push_screen_wait(ConfirmModal(f"Save {target} before launching?",
                                                                yes="Save and launch")):
                return
            if not (self.save_to(self.path) if self.path is not None else await self.ask_save_as()):
                return
        assert self.path is not None
        self.post_message(LaunchRequested(self.path))
