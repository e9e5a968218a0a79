"""IP-Adapter units at run time: the adapter's layers for the job's UNet, the image tokens, and the extra attention.

diffusers builds the adapter's modules from the UNet (`_convert_ip_adapter_attn_to_diffusers` for the `to_k_ip` /
`to_v_ip` layers of each cross-attention, `_convert_ip_adapter_image_proj_to_diffusers` for the image projection);
neither sets anything on the UNet. The UNet itself is never changed: for each UNet call of the unit's guidance
window, forward hooks (through the extension API, removed when the call returns) keep the query each cross-attention
computes and add, before its output projection, `weight * attention(query, to_k_ip(tokens), to_v_ip(tokens))`:
the sum diffusers' IPAdapterAttnProcessor2_0 forms. Rows of the negative prompt get the tokens of the
unconditional image (zero image embeds for a plain IP-Adapter, the encoder's hidden states of a black picture for
"plus" ones), as diffusers does. A job without an IP-Adapter unit, or with weight 0, calls the UNet untouched.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Sequence

from PIL import Image

from modules.extensions.api import UNetCallContext, UserError

from .ip_adapter import UNET_WIDTHS, AdapterFile, EncoderFile, IPAdapterFiles
from .preprocessors import rgb_array


@dataclass
class BuiltAdapter:
    """An adapter's modules for one UNet architecture, on its device and dtype: the image projection and, per
    cross-attention module name, its (to_k_ip, to_v_ip)."""

    projection: Any
    layers: dict[str, tuple[Any, Any]]


@dataclass
class IPAdapterUnit:
    """One enabled IP-Adapter unit of a job (made in BEFORE_JOB): its files, picture, weight and window; `tokens`
    caches the (unconditional, conditional) image tokens per device and dtype."""

    index: int
    adapter: AdapterFile
    encoder: EncoderFile
    picture: Image.Image
    weight: float
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    tokens: dict[Any, Any] = field(default_factory=dict, repr=False)

    def active_at(self, step: int, total: int) -> bool:
        done = step / max(total, 1)
        return self.weight != 0 and self.guidance_start <= done <= self.guidance_end


def _unet_width(width: int) -> str:
    return f"{width} ({UNET_WIDTHS[width]})" if width in UNET_WIDTHS else str(width)


def build_adapter(adapter: AdapterFile, unet: Any) -> BuiltAdapter:
    """The adapter's modules for `unet` (read, not changed); UserError when the adapter is for another model."""
    width = int(unet.config.cross_attention_dim)
    if adapter.cross_attention_dim != width:
        raise UserError(f"IP-Adapter {adapter.name} is for a UNet of cross-attention width "
                        f"{_unet_width(adapter.cross_attention_dim)}; this checkpoint's is {_unet_width(width)}.")
    state = {"image_proj": dict(adapter.image_proj), "ip_adapter": dict(adapter.ip_adapter)}
    try:
        processors = unet._convert_ip_adapter_attn_to_diffusers([state], low_cpu_mem_usage=False)
        projection = unet._convert_ip_adapter_image_proj_to_diffusers(state["image_proj"], low_cpu_mem_usage=False)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise UserError(f"IP-Adapter {adapter.name} does not fit this checkpoint's UNet ({exc}).") from None
    layers = {}
    for name, processor in processors.items():
        if hasattr(processor, "to_k_ip"):
            processor.to(device=unet.device, dtype=unet.dtype)
            layers[name.removesuffix(".processor")] = (processor.to_k_ip[0], processor.to_v_ip[0])
    if 2 * len(layers) != len(adapter.ip_adapter):
        raise UserError(f"IP-Adapter {adapter.name} has {len(adapter.ip_adapter) // 2} cross-attention layers; this "
                        f"checkpoint's UNet has {len(layers)}.")
    return BuiltAdapter(projection.to(device=unet.device, dtype=unet.dtype).eval(), layers)


def image_tokens(unit: IPAdapterUnit, built: BuiltAdapter, encoder: Any, processor: Any) -> Any:
    """(2, tokens, width): the projected image tokens of the unconditional (row 0) and the unit's picture (row 1),
    as diffusers' `encode_image` and the UNet's image projection make them."""
    import torch

    device, dtype = next(encoder.parameters()).device, next(encoder.parameters()).dtype
    picture = Image.fromarray(rgb_array(unit.picture))  # transparent parts over white, as A1111's HWC3
    pixels = processor(picture, return_tensors="pt").pixel_values.to(device=device, dtype=dtype)
    if unit.adapter.hidden_states:
        positive = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        negative = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    else:
        positive = encoder(pixels).image_embeds
        negative = torch.zeros_like(positive)
    return built.projection(torch.cat([negative, positive]))


def _keep_query(store: dict[str, Any], module: Any, args: Any, output: Any) -> None:
    store["query"] = output


def _add_image_attention(store: dict[str, Any], heads: int, terms: Sequence[tuple[Any, Any, Any, float]],
                         module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pre-hook of a cross-attention's output projection: its input plus each unit's weighted image attention."""
    import torch.nn.functional as F

    hidden = args[0]
    query = store.pop("query")
    batch, head_dim = query.shape[0], query.shape[-1] // heads
    query = query.view(batch, -1, heads, head_dim).transpose(1, 2)
    for to_k, to_v, tokens, weight in terms:
        key = to_k(tokens).view(batch, -1, heads, head_dim).transpose(1, 2)
        value = to_v(tokens).view(batch, -1, heads, head_dim).transpose(1, 2)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False)
        attended = attended.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)
        hidden = hidden + weight * attended
    return (hidden, *args[1:])


class IPAdapterRunner:
    """The extension's IP-Adapter state: the files it read and the adapters built for UNets (the last ones used)."""

    def __init__(self, files: IPAdapterFiles | None = None, limit: int = 2) -> None:
        self.files = files or IPAdapterFiles()
        self.limit = limit
        self._built: dict[Any, tuple[AdapterFile, BuiltAdapter]] = {}
        self._lock = threading.Lock()

    def prepare(self, index: int, module: str, model_path: Any, picture: Image.Image, weight: float,
                guidance_start: float, guidance_end: float) -> IPAdapterUnit:
        """A job's unit, its adapter read and its encoder found (UserErrors before any generation work)."""
        adapter = self.files.adapter(model_path)
        encoder = self.files.encoder_for(adapter, module)
        return IPAdapterUnit(index, adapter, encoder, picture, weight, guidance_start, guidance_end)

    def built(self, adapter: AdapterFile, unet: Any) -> BuiltAdapter:
        """The adapter's modules for a UNet architecture (its config), device and dtype."""
        layout = json.dumps(dict(unet.config), sort_keys=True, default=str)
        key = (id(adapter), str(unet.device), unet.dtype, layout)
        with self._lock:
            cached = self._built.pop(key, None)
            built = cached[1] if cached is not None else build_adapter(adapter, unet)
            self._built[key] = (adapter, built)  # the adapter is held, so its id stays its own while cached
            while len(self._built) > self.limit:
                self._built.pop(next(iter(self._built)))
            return built

    def tokens(self, unit: IPAdapterUnit, built: BuiltAdapter, unet: Any) -> Any:
        import torch

        key = (str(unet.device), unet.dtype)
        made, tokens = unit.tokens.get(key, (None, None))
        if made is not built:
            encoder, processor = self.files.encoder(unit.encoder.path, unet.device, unet.dtype)
            with torch.no_grad():
                tokens = image_tokens(unit, built, encoder, processor)
            unit.tokens[key] = (built, tokens)
        return tokens

    def unet_call(self, ctx: UNetCallContext, units: Sequence[IPAdapterUnit]) -> None:
        """Hook the cross-attentions of this UNet call for the units acting at this step."""
        import torch

        acting = [unit for unit in units if unit.active_at(ctx.step, ctx.total)]
        if not acting:
            return
        rows = torch.tensor([0 if uncond else 1 for uncond in ctx.uncond], device=ctx.sample.device)
        per_unit = []
        for unit in acting:
            built = self.built(unit.adapter, ctx.unet)
            per_unit.append((built, self.tokens(unit, built, ctx.unet).index_select(0, rows), unit.weight))
        for name in per_unit[0][0].layers:
            attention = ctx.unet.get_submodule(name)
            terms = [(*built.layers[name], tokens, weight) for built, tokens, weight in per_unit]
            store: dict[str, Any] = {}
            ctx.forward_hook(attention.to_q, partial(_keep_query, store))
            ctx.forward_hook(attention.to_out[0], partial(_add_image_attention, store, attention.heads, terms),
                             pre=True)
