"""The Gallery tab: search and page through every saved picture (`App.gallery`, `modules.gallery.index`).

Filters (prompt text, optionally in the negative prompt too; model and sampler from the index; seed; a date range)
above a page of thumbnails, newest first, `PAGE_SIZE` a page with previous/next and the page count. Selecting a
thumbnail shows its infotext; the buttons send it to txt2img, img2img, inpaint, PNG Info or Extras (wired in
`sendto.wire_gallery`, like PNG Info's), move it to the trash (`<data_dir>/trash`) or rebuild the index from the
output folders. Opening the tab shows the newest pictures again.

Thumbnails are the saved files themselves: the output folders are registered as Gradio static paths, so the
browser fetches each file directly (nothing is decoded, copied or hashed on the server) and only the current page.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.gallery.index import GalleryEntry, GalleryPage, GalleryQuery

if TYPE_CHECKING:
    from modules.app import App

TAB = "gallery"
PAGE_SIZE = 36
ANY = ("Any", "")


@dataclass
class GalleryTab:
    """The tab's widgets and per-session state (`entries`: ids of the page shown; `selected`: the chosen id)."""

    tab: gr.Tab
    text: gr.Textbox
    in_negative: gr.Checkbox
    model: gr.Dropdown
    sampler: gr.Dropdown
    seed: gr.Textbox
    date_from: gr.Textbox
    date_to: gr.Textbox
    search: gr.Button
    gallery: gr.Gallery
    page_info: gr.HTML
    previous: gr.Button
    next: gr.Button
    rebuild: gr.Button
    info: gr.HTML
    send_txt2img: gr.Button
    send_img2img: gr.Button
    send_inpaint: gr.Button
    send_pnginfo: gr.Button
    send_extras: gr.Button
    delete: gr.Button
    offset: gr.State
    entries: gr.State
    selected: gr.State

    def filters(self) -> list[Any]:
        return [self.text, self.in_negative, self.model, self.sampler, self.seed, self.date_from, self.date_to]


def _date(text: str | None, what: str) -> datetime.date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise gr.Error(f"The {what} date {text!r} is not a date: write it as YYYY-MM-DD.",
                       print_exception=False) from None


def gallery_query(values: dict[str, Any], offset: int = 0) -> GalleryQuery:
    """The query of the filter widgets' values (keyed like `GalleryTab` fields); gr.Error for a bad seed/date."""
    seed_text = str(values.get("seed") or "").strip()
    if seed_text and not seed_text.lstrip("-").isdigit():
        raise gr.Error(f"The seed {seed_text!r} is not a whole number.", print_exception=False)
    return GalleryQuery(text=str(values.get("text") or ""), model=str(values.get("model") or ""),
                        sampler=str(values.get("sampler") or ""), seed=int(seed_text) if seed_text else None,
                        date_from=_date(values.get("date_from"), "from"), date_to=_date(values.get("date_to"), "to"),
                        in_negative=bool(values.get("in_negative")), offset=max(0, int(offset)), limit=PAGE_SIZE)


def page_html(page: GalleryPage) -> str:
    if page.total == 0:
        return ("<p class='gallery-page'>No pictures match. Pictures are indexed as they are saved; "
                "<b>Rebuild index</b> reads the output folders.</p>")
    return (f"<p class='gallery-page'>Page <b>{page.page}</b> of <b>{page.pages}</b> "
            f"&middot; {page.total} picture{'s' if page.total != 1 else ''}</p>")


def entry_html(entry: GalleryEntry | None, data_dir: Path) -> str:
    """The picture's infotext (as the results panel shows it) and its file, size and date."""
    if entry is None:
        return ""
    body = "<br>".join(html.escape(line) for line in entry.infotext.split("\n")) if entry.infotext \
        else "<i>This picture holds no generation parameters.</i>"
    size = f"{entry.width}x{entry.height}, " if entry.width else ""
    size += f"{entry.size / 1024:.0f} KiB" if entry.size >= 1024 else f"{entry.size} bytes"
    facts = f"{html.escape(entry.path)} &middot; {size} &middot; " \
            f"{datetime.datetime.fromtimestamp(entry.mtime):%Y-%m-%d %H:%M}"
    return f"<div class='infotext'><p>{body}</p><p class='gallery-file'>{facts}</p></div>"


def build_gallery_tab(app: "App") -> GalleryTab:
    """Create the tab inside the main `gr.Tabs` and wire its search, paging, selection, delete and rebuild."""
    with gr.Tab("Gallery", id=TAB, elem_id=f"tab_{TAB}") as tab:
        with gr.Row(equal_height=True):
            text = gr.Textbox(label="Prompt contains", placeholder="Words of the prompt (any case)", scale=3,
                              elem_id="gallery_search")
            model = gr.Dropdown([ANY], value="", label="Model", elem_id="gallery_model", scale=2)
            sampler = gr.Dropdown([ANY], value="", label="Sampler", elem_id="gallery_sampler", scale=1)
            seed = gr.Textbox(label="Seed", placeholder="any", elem_id="gallery_seed", scale=1)
            date_from = gr.Textbox(label="From", placeholder="YYYY-MM-DD", elem_id="gallery_date_from", scale=1)
            date_to = gr.Textbox(label="To", placeholder="YYYY-MM-DD", elem_id="gallery_date_to", scale=1)
        with gr.Row(equal_height=True):
            in_negative = gr.Checkbox(False, label="Search the negative prompt too", elem_id="gallery_in_negative")
            search = gr.Button("Search", variant="primary", elem_id="gallery_search_button", scale=0)
            previous = gr.Button("\u25c0 Previous", elem_id="gallery_previous", size="sm", scale=0)
            page_info = gr.HTML("", elem_id="gallery_page_info")
            following = gr.Button("Next \u25b6", elem_id="gallery_next", size="sm", scale=0)
            rebuild = gr.Button("Rebuild index", elem_id="gallery_rebuild", size="sm", scale=0)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Pictures", show_label=False, columns=6, fit_columns=False, height=760,
                                     object_fit="cover", allow_preview=False, interactive=False,
                                     elem_id="gallery_images")
            with gr.Column(scale=2):
                info = gr.HTML("", elem_id="gallery_info", elem_classes=["infotext"])
                with gr.Row():
                    send_txt2img = gr.Button("Send to txt2img", elem_id="gallery_send_to_txt2img", size="sm")
                    send_img2img = gr.Button("Send to img2img", elem_id="gallery_send_to_img2img", size="sm")
                    send_inpaint = gr.Button("Send to inpaint", elem_id="gallery_send_to_inpaint", size="sm")
                with gr.Row():
                    send_pnginfo = gr.Button("Send to PNG Info", elem_id="gallery_send_to_pnginfo", size="sm")
                    send_extras = gr.Button("Send to extras", elem_id="gallery_send_to_extras", size="sm")
                    delete = gr.Button("Delete (to trash)", elem_id="gallery_delete", size="sm", variant="stop")
    view = GalleryTab(tab, text, in_negative, model, sampler, seed, date_from, date_to, search, gallery, page_info,
                      previous, following, rebuild, info, send_txt2img, send_img2img, send_inpaint, send_pnginfo,
                      send_extras, delete, gr.State(0), gr.State([]), gr.State(None))
    _wire(app, view)
    return view


def _wire(app: "App", view: GalleryTab) -> None:
    served: set[Path] = set()
    names = {"text": view.text, "in_negative": view.in_negative, "model": view.model, "sampler": view.sampler,
             "seed": view.seed, "date_from": view.date_from, "date_to": view.date_to}

    def serve_roots() -> None:
        """Let the browser fetch files of the output folders directly (folders set in settings later included)."""
        roots = [Path(root).resolve() for root in app.gallery.root_folders()]
        new = [root for root in roots if root not in served]
        if new:
            gr.set_static_paths(new)
            served.update(new)

    def show(data: dict, offset: int, *, choices: bool = False) -> dict[Any, Any]:
        serve_roots()
        query = gallery_query({name: data.get(component) for name, component in names.items()}, offset)
        page = app.gallery.search(query)
        if not page.entries and page.offset > 0:  # past the end (pictures deleted meanwhile): the last page
            page = app.gallery.search(dataclasses.replace(query, offset=(page.pages - 1) * PAGE_SIZE))
        updates: dict[Any, Any] = {
            view.gallery: [str(entry.file(app.gallery.data_dir)) for entry in page.entries],
            view.page_info: page_html(page), view.offset: page.offset,
            view.entries: [entry.id for entry in page.entries], view.selected: None, view.info: "",
        }
        if choices:
            updates[view.model] = gr.Dropdown(choices=[ANY, *app.gallery.models()])
            updates[view.sampler] = gr.Dropdown(choices=[ANY, *app.gallery.samplers()])
        return updates

    inputs = {*view.filters(), view.offset}
    outputs = [view.gallery, view.page_info, view.offset, view.entries, view.selected, view.info, view.model,
               view.sampler]
    view.search.click(lambda data: show(data, 0), inputs=inputs, outputs=outputs, show_progress="hidden")
    view.text.submit(lambda data: show(data, 0), inputs=inputs, outputs=outputs, show_progress="hidden")
    view.tab.select(lambda data: show(data, 0, choices=True), inputs=inputs, outputs=outputs, show_progress="hidden")
    view.previous.click(lambda data: show(data, data[view.offset] - PAGE_SIZE), inputs=inputs, outputs=outputs,
                        show_progress="hidden")
    view.next.click(lambda data: show(data, data[view.offset] + PAGE_SIZE), inputs=inputs, outputs=outputs,
                    show_progress="hidden")

    def on_select(entries: list[int], event: gr.SelectData) -> tuple[int | None, str]:
        index = int(event.index) if event.index is not None else -1
        if not 0 <= index < len(entries or []):
            return None, ""
        entry = app.gallery.get(entries[index])
        return (entry.id if entry else None), entry_html(entry, app.gallery.data_dir)

    view.gallery.select(on_select, inputs=view.entries, outputs=[view.selected, view.info], show_progress="hidden")

    def delete(data: dict) -> dict[Any, Any]:
        chosen = data[view.selected]
        if chosen is None:
            gr.Warning("Select a picture first.")
            return {}
        moved = app.gallery.delete(int(chosen))
        if moved is not None:
            gr.Info(f"Moved to {app.gallery.stored_path(moved)}")
        return show(data, data[view.offset])

    view.delete.click(delete, inputs={*inputs, view.selected}, outputs=outputs, show_progress="hidden")

    def rebuild(data: dict) -> dict[Any, Any]:
        count = app.gallery.rebuild()
        gr.Info(f"The gallery index holds {count} picture{'s' if count != 1 else ''}.")
        return show(data, 0, choices=True)

    view.rebuild.click(rebuild, inputs=inputs, outputs=outputs, concurrency_limit=1)
