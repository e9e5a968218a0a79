"""The "Extra networks" panel of the generation tabs: pick a textual inversion embedding or a LoRA to put it in the
prompt (A1111's extra-networks cards, as two lists in an accordion under the prompts).

Picking an embedding adds its name to the prompt; picking a LoRA adds `<lora:name:1>` (A1111's default multiplier
`extra_networks_default_multiplier` = 1, and its " " separator). As with A1111's cards, picking an entry whose text
is already in the prompt takes it out again. The refresh button rescans `models/embeddings` and `models/Lora`.
The lists show every file found; whether an embedding suits the loaded model is decided when the job runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from modules.networks.service import ExtraNetworks
from modules.ui.common import REFRESH_ICON, UiContext, tool_button

DEFAULT_MULTIPLIER = 1
SEPARATOR = " "


def lora_text(name: str, multiplier: float = DEFAULT_MULTIPLIER) -> str:
    """The prompt text A1111 inserts for a LoRA card."""
    return f"<lora:{name}:{multiplier:g}>"


def toggle_in_prompt(prompt: str, text: str) -> str:
    """`prompt` with `text` appended (after a space), or with it removed when it is already there (A1111)."""
    prompt = prompt or ""
    if text in prompt:
        before, _, after = prompt.partition(text)
        before, after = before.rstrip(" "), after.lstrip(" ")
        return before + (SEPARATOR if before and after else "") + after
    if not prompt or prompt[-1].isspace():
        return prompt + text
    return prompt + SEPARATOR + text


def choices(networks: ExtraNetworks) -> tuple[list[str], list[str]]:
    """(embedding names, LoRA names) found on disk."""
    networks.refresh_embeddings()
    networks.refresh_loras()
    return list(networks.embeddings.embeddings), list(networks.loras.files)


@dataclass
class ExtraNetworksPanel:
    embeddings: gr.Dropdown
    loras: gr.Dropdown
    refresh: gr.Button


def build_extra_networks(ctx: UiContext, tab: str, prompt: gr.Textbox) -> ExtraNetworksPanel:
    """Create the accordion (in the current layout context) and wire it to `prompt`."""
    networks = ctx.app.networks
    embedding_names, lora_names = networks.names()  # file names at start-up: the page does not wait for torch
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tab}_extra_networks"):
        with gr.Row(equal_height=True):
            embeddings = gr.Dropdown(label="Textual Inversion", choices=embedding_names, value=None,
                                     elem_id=f"{tab}_extra_networks_embeddings", filterable=True, scale=3)
            loras = gr.Dropdown(label="Lora", choices=lora_names, value=None, elem_id=f"{tab}_extra_networks_loras",
                                filterable=True, scale=3)
            refresh = tool_button(REFRESH_ICON, f"{tab}_extra_networks_refresh")
    panel = ExtraNetworksPanel(embeddings, loras, refresh)
    _wire(networks, panel, prompt)
    return panel


def _wire(networks: ExtraNetworks, panel: ExtraNetworksPanel, prompt: gr.Textbox) -> None:
    def pick_embedding(current: str, name: str | None) -> tuple[str, None]:
        return (toggle_in_prompt(current, name) if name else current), None

    def pick_lora(current: str, name: str | None) -> tuple[str, None]:
        return (toggle_in_prompt(current, lora_text(name)) if name else current), None

    def refresh() -> tuple[gr.Dropdown, gr.Dropdown]:
        networks.refresh()
        embedding_names, lora_names = choices(networks)
        return gr.Dropdown(choices=embedding_names, value=None), gr.Dropdown(choices=lora_names, value=None)

    panel.embeddings.input(pick_embedding, inputs=[prompt, panel.embeddings], outputs=[prompt, panel.embeddings],
                           show_progress="hidden", queue=False)
    panel.loras.input(pick_lora, inputs=[prompt, panel.loras], outputs=[prompt, panel.loras],
                      show_progress="hidden", queue=False)
    panel.refresh.click(refresh, outputs=[panel.embeddings, panel.loras], show_progress="hidden", queue=False)
