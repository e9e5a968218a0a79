"""The bar above the tabs: checkpoint (with refresh), VAE and CLIP skip (A1111's quicksettings).

The values shown here go into every request of the page (`checkpoint`, `vae`, `clip_skip`), so a job runs with
what its page shows even if another browser changed the settings meanwhile. Changing one by hand also stores it
as the setting (`sd_model_checkpoint`, `sd_vae`, `CLIP_stop_at_last_layers`) for API clients and the next page
load. A new checkpoint is loaded right away through the job queue (the single owner of the device), so the page
stays usable and shows the load's progress; a paste that changes CLIP skip changes only this page.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from modules.errors import ModelNotFound, UserError
from modules.jobs import JobState
from modules.models.manager import VAE_AUTOMATIC, VAE_NONE
from modules.ui.common import REFRESH_ICON, tool_button
from modules.ui.progress import failure_message, job_group, job_owner, watch
from modules.ui.settings_tab import option_widget, quicksettings_keys, setting_value, widget_value

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)


@dataclass
class TopRow:
    checkpoint: gr.Dropdown
    refresh: gr.Button
    vae: gr.Dropdown
    clip_skip: gr.Slider
    status: gr.HTML
    quick: dict[str, gr.components.Component] = field(default_factory=dict)
    """The other options of the Quicksettings list, by key (A1111's "Options in main UI")."""

    def named(self) -> dict[str, gr.components.Component]:
        return {"checkpoint": self.checkpoint, "vae": self.vae, "clip_skip": self.clip_skip}


def checkpoint_choices(app: "App") -> list[str]:
    return [record.title for record in app.models.list_checkpoints()]


def checkpoint_title(app: "App") -> "Callable[[str], str | None]":
    """A checkpoint name from an infotext ("name [hash]", a file name, a hash) -> its dropdown title, or None
    (A1111's closest-match rules, `ModelCatalog.match`)."""
    def title(name: str) -> str | None:
        try:
            return app.models.resolve_checkpoint(name).title
        except ModelNotFound:
            return None
    return title


def vae_choices(app: "App") -> list[str]:
    return [VAE_AUTOMATIC, VAE_NONE, *(record.name for record in app.models.list_vaes())]


def current_checkpoint(app: "App") -> str | None:
    """Title of the checkpoint the `sd_model_checkpoint` setting names (first one if it names none that exists)."""
    setting = app.settings.get()["sd_model_checkpoint"]
    try:
        return app.models.resolve_checkpoint(setting or None).title
    except ModelNotFound:
        choices = checkpoint_choices(app)
        return choices[0] if choices else None


def current_vae(app: "App") -> str:
    value = app.settings.get()["sd_vae"]
    return value if value in vae_choices(app) else VAE_AUTOMATIC


def build_top_row(app: "App") -> TopRow:
    """Create the bar inside the current layout context and wire its events."""
    with gr.Row(elem_id="quicksettings", equal_height=True):
        checkpoint = gr.Dropdown(label="Stable Diffusion checkpoint", choices=checkpoint_choices(app),
                                 value=current_checkpoint(app), elem_id="setting_sd_model_checkpoint", scale=4,
                                 min_width=280)
        refresh = tool_button(REFRESH_ICON, "refresh_sd_model_checkpoint")
        vae = gr.Dropdown(label="SD VAE", choices=vae_choices(app), value=current_vae(app), elem_id="setting_sd_vae",
                          scale=2, min_width=200)
        clip_skip = gr.Slider(label="Clip skip", minimum=1, maximum=12, step=1,
                              value=int(app.settings.get()["CLIP_stop_at_last_layers"]),
                              elem_id="setting_CLIP_stop_at_last_layers", scale=2, min_width=200)
        settings = app.settings.get()
        quick = {key: option_widget(app, settings.table[key], settings[key], info=False, scale=2, min_width=160)
                 for key in quicksettings_keys(settings, settings.table.keys())}
        status = gr.HTML("", elem_id="quicksettings_status", elem_classes=["quicksettings-status"], scale=2,
                         padding=False)
    row = TopRow(checkpoint, refresh, vae, clip_skip, status, quick)
    _wire(app, row)
    return row


def _store_setting(app: "App", key: str, value: Any) -> None:
    try:
        app.settings.update({key: value})
    except UserError as error:
        gr.Warning(str(error))


def load_checkpoint_updates(app: "App", title: str | None, owner: str | None,
                            poll_seconds: float = 0.25, group: str | None = None) -> Iterator[str]:
    """Store the choice and load the checkpoint through the job queue; yields status HTML while it loads."""
    if not title:
        return
    _store_setting(app, "sd_model_checkpoint", title)
    vae = app.settings.get()["sd_vae"]

    def load(ctx: Any) -> str:  # runs on the queue's worker thread, the only place that loads weights
        with app.models.get(title, vae):
            return title

    job = app.jobs.submit(load, owner=owner, description=f"load checkpoint {title}", group=group)
    for view in watch(job, poll_seconds):
        if view.state is JobState.QUEUED:
            yield f"<span class='status'>Waiting to load {_short(title)} (queue position {view.position})</span>"
        elif not view.finished:
            yield f"<span class='status loading'>Loading {_short(title)}&hellip;</span>"
    if job.state is JobState.FAILED:
        yield ""
        raise gr.Error(f"Could not load {title}: {failure_message(job)}", print_exception=False)
    yield f"<span class='status done'>Loaded {_short(title)}</span>" if job.state is JobState.DONE else ""


def _short(title: str) -> str:
    return html.escape(title if len(title) <= 40 else title[:37] + "...")


def _wire(app: "App", row: TopRow) -> None:
    def on_checkpoint(title: str, request: gr.Request) -> Iterator[str]:
        yield from load_checkpoint_updates(app, title, job_owner(request), group=job_group(request))

    row.checkpoint.input(on_checkpoint, inputs=row.checkpoint, outputs=row.status, show_progress="hidden",
                         concurrency_limit=None, trigger_mode="always_last")
    row.vae.input(lambda value: _store_setting(app, "sd_vae", value), inputs=row.vae, show_progress="hidden")
    row.clip_skip.release(lambda value: _store_setting(app, "CLIP_stop_at_last_layers", int(value)),
                          inputs=row.clip_skip, show_progress="hidden")

    def refresh() -> tuple[gr.Dropdown, gr.Dropdown]:
        app.models.refresh()
        return (gr.Dropdown(choices=checkpoint_choices(app), value=current_checkpoint(app)),
                gr.Dropdown(choices=vae_choices(app), value=current_vae(app)))

    row.refresh.click(refresh, outputs=[row.checkpoint, row.vae], show_progress="hidden")
    for key, widget in row.quick.items():
        _wire_quick_setting(app, key, widget)


def _wire_quick_setting(app: "App", key: str, widget: gr.components.Component) -> None:
    """A quicksetting is stored as soon as the user changes it (sliders when released), as in A1111."""
    spec = app.settings.get().table[key]

    def store(value: Any) -> None:
        _store_setting(app, key, setting_value(spec, value))

    event = getattr(widget, "release" if isinstance(widget, gr.Slider) else "input")
    event(store, inputs=widget, show_progress="hidden")


def native_size(app: "App", title: str | None) -> tuple[int, int] | None:
    """The resolution a checkpoint declares it was trained at (the bundled demo model: 64x64), if any."""
    record = app.models.catalog.match(title) if title else None
    return record.native_resolution if record is not None else None


def size_updates(app: "App", title: str | None, count: int) -> list[Any]:
    """New values for `count` width/height pairs when `title` declares its resolution; otherwise leave them.

    A1111 keeps the sliders as they are on a checkpoint change; we do the same unless the checkpoint states its
    native size (a model trained at 64 px draws repeating patterns at 512)."""
    size = native_size(app, title)
    if size is None:
        return [gr.skip()] * (2 * count)
    return [value for _ in range(count) for value in size]


def page_load_values(app: "App", row: TopRow) -> dict[Any, Any]:
    """Fresh top-row values for a page that just loaded (settings may have changed since the UI was built)."""
    settings = app.settings.get()
    return {row.checkpoint: gr.Dropdown(choices=checkpoint_choices(app), value=current_checkpoint(app)),
            row.vae: gr.Dropdown(choices=vae_choices(app), value=current_vae(app)),
            row.clip_skip: int(settings["CLIP_stop_at_last_layers"]),
            **{widget: widget_value(settings.table[key], settings[key]) for key, widget in row.quick.items()}}
