"""Prompts from file or textbox (A1111's built-in script, rewritten on the extension API): one generation per line
of a list, each line either a prompt or A1111's command-line style options (`--prompt "a cat" --steps 10 ...`).

Controls, in A1111's positional `script_args` order: `checkbox_iterate` ("Iterate seed every line": the next line
starts at seed + batch size x batch count), `checkbox_iterate_batch` ("Use same random seed for all lines": a
random seed is drawn once), `prompt_position` ("start" or "end": where a line's prompt goes relative to the tab's
prompt), `prompt_txt` (the list). A file upload fills the list.

Line options (A1111's set): prompt, negative_prompt, styles (several words), seed, subseed, subseed_strength,
seed_resize_from_w, seed_resize_from_h, sampler_name / sampler_index, steps, cfg_scale, width, height, batch_size,
n_iter, sd_model (a checkpoint name), tiling (the Tiling setting for that line), do_not_save_samples,
do_not_save_grid, prompt_for_display (ignored); `restore_faces` is refused (not available here), and the output
folder options are refused too (no request may choose where files go). An unknown option is an error naming the
line.
"""

from __future__ import annotations

import random
import shlex
from typing import Any, Callable

from modules.extensions.api import (
    ExtensionContext,
    GenerationRequest,
    GenerationResult,
    RunContext,
    UiBuilder,
    UserError,
)

TITLE = "Prompts from file or textbox"


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not true or false")


# option -> (request field, converter); None: accepted and ignored
_OPTIONS: dict[str, tuple[str, Callable[[str], Any]] | None] = {
    "prompt": ("prompt", str), "negative_prompt": ("negative_prompt", str),
    "seed": ("seed", int), "subseed": ("subseed", int), "subseed_strength": ("subseed_strength", float),
    "seed_resize_from_w": ("seed_resize_from_w", int), "seed_resize_from_h": ("seed_resize_from_h", int),
    "sampler_name": ("sampler", str), "sampler_index": ("sampler", str), "steps": ("steps", int),
    "cfg_scale": ("cfg_scale", float), "width": ("width", int), "height": ("height", int),
    "batch_size": ("batch_size", int), "n_iter": ("n_iter", int), "sd_model": ("checkpoint", str),
    "do_not_save_samples": ("do_not_save_samples", _bool), "do_not_save_grid": None, "prompt_for_display": None,
    "tiling": ("tiling", _bool),
}
_REFUSED = {"restore_faces": "face restoration is not available",
            "outpath_samples": "a request cannot choose the output folder",
            "outpath_grids": "a request cannot choose the output folder"}


def parse_line(line: str, number: int) -> dict[str, Any]:
    """A line's options as {request field: value}; a line without `--` is a prompt."""
    if not line.startswith("--"):
        return {"prompt": line}
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UserError(f"{TITLE}: line {number}: {exc} in {line!r}") from None
    values: dict[str, Any] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if not word.startswith("--"):
            raise UserError(f"{TITLE}: line {number}: expected an option (--name value), got {word!r}")
        name = word[2:]
        index += 1
        if name == "styles":  # several words, up to the next option
            styles = []
            while index < len(words) and not words[index].startswith("--"):
                styles.append(words[index])
                index += 1
            values["styles"] = tuple(styles)
            continue
        if index >= len(words):
            raise UserError(f"{TITLE}: line {number}: --{name} needs a value")
        text = words[index]
        index += 1
        if name in _REFUSED:
            raise UserError(f"{TITLE}: line {number}: --{name}: {_REFUSED[name]}")
        if name not in _OPTIONS:
            raise UserError(f"{TITLE}: line {number}: unknown option --{name}; known: "
                            f"{', '.join(sorted([*_OPTIONS, 'styles']))}")
        target = _OPTIONS[name]
        if target is None:
            continue
        field, convert = target
        try:
            values[field] = convert(text)
        except ValueError as exc:
            raise UserError(f"{TITLE}: line {number}: --{name} {text!r}: {exc}") from None
    return values


def ui(builder: UiBuilder) -> dict[str, Any]:
    """A1111's controls in its positional order, and a file upload that fills the list."""
    import gradio as gr

    iterate = gr.Checkbox(False, label="Iterate seed every line", elem_id=builder.elem_id("checkbox_iterate"))
    same = gr.Checkbox(False, label="Use same random seed for all lines",
                       elem_id=builder.elem_id("checkbox_iterate_batch"))
    position = gr.Radio(["start", "end"], value="start", label="Insert prompts at the",
                        elem_id=builder.elem_id("prompt_position"))
    text = gr.Textbox(label="List of prompt inputs", lines=3, elem_id=builder.elem_id("prompt_txt"))
    upload = gr.File(label="Upload prompt inputs", type="binary", elem_id=builder.elem_id("file"))

    def load(data: bytes | None) -> Any:
        return gr.skip() if data is None else data.decode("utf-8", errors="replace")

    upload.change(load, inputs=upload, outputs=text, show_progress="hidden")
    return {"checkbox_iterate": iterate, "checkbox_iterate_batch": same, "prompt_position": position,
            "prompt_txt": text}


def _joined(line_text: str, tab_text: str, position: str) -> str:
    if not line_text or not tab_text:
        return line_text or tab_text
    return f"{line_text} {tab_text}" if position == "start" else f"{tab_text} {line_text}"


def _line_request(ctx: RunContext, request: GenerationRequest, values: dict[str, Any],
                  position: str) -> GenerationRequest:
    """The tab's request with one line's options: prompts joined, names resolved, tiling as the setting."""
    values = dict(values)
    if "prompt" in values:
        values["prompt"] = _joined(values["prompt"], request.prompt, position)
    if "negative_prompt" in values:
        values["negative_prompt"] = _joined(values["negative_prompt"], request.negative_prompt, position)
    if "sampler" in values:
        values["sampler"] = ctx.resolve_sampler(values["sampler"])
    if "checkpoint" in values:
        values["checkpoint"] = ctx.resolve_checkpoint(values["checkpoint"])
    if "tiling" in values:  # a setting, as A1111's `p.tiling` is
        values["overrides"] = {**request.overrides, "tiling": values.pop("tiling")}
    return request.with_changes(**values)


def run(ctx: RunContext, request: GenerationRequest) -> GenerationResult:
    """One generation per line, in order; the results one after the other (see the module doc)."""
    lines = [line.strip() for line in str(ctx.args.get("prompt_txt") or "").splitlines()]
    jobs = [parse_line(line, number) for number, line in enumerate(lines, start=1) if line]
    if not jobs:
        raise UserError(f"{TITLE}: the list is empty: write one prompt (or one line of --options) per line.")
    iterate = bool(ctx.args.get("checkbox_iterate", False))
    same_seed = bool(ctx.args.get("checkbox_iterate_batch", False))
    position = str(ctx.args.get("prompt_position") or "start")
    seed = request.seed
    if (iterate or same_seed) and seed == -1:
        seed = random.randrange(4294967294)
    collected: dict[str, list[Any]] = {key: [] for key in
                                       ("images", "seeds", "subseeds", "prompts", "negatives", "infotexts")}
    comments: dict[str, None] = {}
    interrupted = False
    for index, values in enumerate(jobs):
        if ctx.interrupted():
            interrupted = True
            break
        save = not values.pop("do_not_save_samples", False)
        job = _line_request(ctx, request, values, position).with_changes(seed=seed)
        result = ctx.generate(job, save=save, part=(index, len(jobs)))
        for key, items in (("images", result.images), ("seeds", result.seeds), ("subseeds", result.subseeds),
                           ("prompts", result.prompts), ("negatives", result.negative_prompts),
                           ("infotexts", result.infotexts)):
            collected[key].extend(items)
        comments.update(dict.fromkeys(result.comments))
        if result.interrupted:
            interrupted = True
            break
        if iterate:
            seed = job.seed + job.batch_size * job.n_iter if job.seed != -1 else seed
    return GenerationResult(tuple(collected["images"]), tuple(collected["seeds"]), tuple(collected["subseeds"]),
                            tuple(collected["prompts"]), tuple(collected["negatives"]),
                            tuple(collected["infotexts"]), request, interrupted=interrupted,
                            comments=tuple(comments))


def register(ext: ExtensionContext) -> None:
    ext.add_script(TITLE, ui=ui, run=run)
