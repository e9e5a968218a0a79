"""img2img's "Interrogate CLIP" button (A1111's): the caption of the tab's picture replaces the tab's prompt.

The caption comes from the captioning model in models/BLIP (`modules.interrogate`), queued like a generation
(`App.submit_interrogate`); no picture, no model or a failure is a message in the page, and the prompt stays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from modules.errors import UserError
from modules.jobs import JobState
from modules.ui.progress import job_group, job_owner, raise_for_job, watch

if TYPE_CHECKING:
    from modules.app import App


def caption_for_prompt(app: "App", picture: Image.Image | None, owner: str | None = None,
                       group: str | None = None) -> str:
    """The caption of `picture`, waiting for its job; a `gr.Error` with the reason when there is none."""
    if picture is None:
        raise gr.Error("There is no image to interrogate: put one in the img2img tab first.", print_exception=False)
    try:
        job = app.submit_interrogate(picture, "clip", owner=owner, group=group)
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from error
    for _ in watch(job):
        pass
    raise_for_job(job)  # a failure (no captioning model, say) becomes its message
    if job.state is not JobState.DONE or not isinstance(job.result, str):
        raise gr.Error("Interrogate was cancelled; the prompt is unchanged.", print_exception=False)
    return job.result


def wire_interrogate(app: "App", button: gr.Button, picture_of: Any, inputs: list[Any], prompt: gr.Textbox) -> None:
    """`button` puts the caption of `picture_of(*inputs)` (the tab's current picture) into `prompt`."""
    def interrogate(*values: Any, request: gr.Request | None = None) -> str:
        return caption_for_prompt(app, picture_of(*values), job_owner(request), job_group(request))

    button.click(interrogate, inputs=inputs, outputs=[prompt], show_progress="minimal", concurrency_limit=None)
