"""The model hook (Hook.UNET_CALL, API 1.1): residuals and changed inputs reach the UNet, wrappers run around every
call in order, the UNet is untouched afterwards, and failures are isolated like every other hook."""

from __future__ import annotations

import pytest
import torch

from modules.extensions.api import API_MINOR, API_VERSION, Hook
from modules.extensions.host import ExtensionHost
from modules.extensions.loader import ExtensionState
from tests.extensions.helpers import run_with_host, small_request, tiny_sd1

RESIDUALS = '''
from modules.extensions.api import Hook
from tests.extensions import ext_test_events


def residual_shapes(unet, sample):
    """ControlNet's residual layout: conv_in, every resnet of each down block and each downsampler; mid block."""
    config = unet.config
    rows, _, height, width = sample.shape
    channels = config.block_out_channels
    layers = config.layers_per_block
    layers = [layers] * len(channels) if isinstance(layers, int) else list(layers)
    down = [(rows, channels[0], height, width)]
    for index, (channel, count) in enumerate(zip(channels, layers)):
        down.extend([(rows, channel, height, width)] * count)
        if index < len(channels) - 1:
            height, width = height // 2, width // 2
            down.append((rows, channel, height, width))
    return down, (rows, channels[-1], height, width)


def add(ctx):
    scale = float(ctx.args.get("scale", 0.0))
    ext_test_events.EVENTS.append(("residuals", (ctx.step, ctx.total, ctx.rows, ctx.uncond)))
    down, mid = residual_shapes(ctx.unet, ctx.sample)
    like = ctx.sample
    ctx.add_residuals([like.new_full(shape, scale) for shape in down], like.new_full(mid, scale))


def register(ext):
    ext.on(Hook.UNET_CALL, add)
'''

INPUTS = '''
from modules.extensions.api import Hook


def silence_prompt(ctx):
    if ctx.args.get("on"):
        ctx.encoder_hidden_states = ctx.encoder_hidden_states * 0


def register(ext):
    ext.on(Hook.UNET_CALL, silence_prompt)
'''

WRAPPER = '''
from modules.extensions.api import Hook
from tests.extensions import ext_test_events

NAME = "{name}"


def on_call(ctx):
    def wrapper(call):
        ext_test_events.EVENTS.append((NAME, "enter"))
        if ctx.args.get("boost"):
            ctx.forward_hook(ctx.unet.mid_block, lambda module, args, output: output * 1.5)
        output = call()
        ext_test_events.EVENTS.append((NAME, "exit"))
        return output
    ctx.wrap(wrapper)


def register(ext):
    ext.on(Hook.UNET_CALL, on_call, order={order})
'''

RAISER = '''
from modules.extensions.api import Hook


def spoil_then_fail(ctx):
    ctx.sample = ctx.sample * 0  # a half-done change must not leak
    ctx.forward_hook(ctx.unet.mid_block, lambda module, args, output: output * 0)
    raise RuntimeError("unet call exploded")


def failing_wrapper(ctx):
    def wrapper(call):
        call()
        raise RuntimeError("wrapper exploded")
    ctx.wrap(wrapper)


def wrong_shape(ctx):
    ctx.wrap(lambda call: call()[:1])


def hook_then_fail(ctx):
    def wrapper(call):
        ctx.forward_hook(ctx.unet.mid_block, lambda module, args, output: output * 0)
        raise RuntimeError("hooked wrapper exploded")
    ctx.wrap(wrapper)


def register(ext):
    ext.on(Hook.UNET_CALL, spoil_then_fail)
    ext.on(Hook.UNET_CALL, failing_wrapper)
    ext.on(Hook.UNET_CALL, wrong_shape)
    ext.on(Hook.UNET_CALL, hook_then_fail)
'''


def _pixels(result) -> bytes:
    return result.images[0].tobytes()


def _unet_state() -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in tiny_sd1().unet.state_dict().items()}


def _assert_untouched(before: dict[str, torch.Tensor]) -> None:
    unet = tiny_sd1().unet
    assert "forward" not in vars(unet)
    for module in unet.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    after = unet.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_api_minor_version():
    assert (API_VERSION, API_MINOR) == (1, 9)
    assert Hook.UNET_CALL.value == "unet_call"


def test_residuals_reach_the_unet_and_zero_residuals_change_nothing(write_extension, make_host, clear_events):
    write_extension("residuals", {"main.py": RESIDUALS}, "Api = 1.1\n")
    host = make_host()
    plain = run_with_host(ExtensionHost(), small_request())
    zero = run_with_host(host, small_request(extension_args={"residuals": {"scale": 0.0}}))
    assert _pixels(zero) == _pixels(plain)
    # CFG: one UNet call per step holding the uncond and the cond row of image 0
    assert clear_events == [("residuals", (0, 2, (0, 0), (True, False))),
                            ("residuals", (1, 2, (0, 0), (True, False)))]
    added = run_with_host(host, small_request(extension_args={"residuals": {"scale": 0.5}}))
    assert _pixels(added) != _pixels(plain)
    assert host.get("residuals").errors == []


def test_changed_inputs_reach_the_unet(write_extension, make_host):
    write_extension("inputs", {"main.py": INPUTS})
    host = make_host()
    plain = run_with_host(host, small_request())
    silenced = run_with_host(host, small_request(extension_args={"inputs": {"on": True}}))
    assert _pixels(silenced) != _pixels(plain)
    # without guidance the prompt is all the UNet sees: a zero prompt equals a zero prompt, whatever it said
    one = run_with_host(host, small_request(cfg_scale=1.0, extension_args={"inputs": {"on": True}}))
    other = run_with_host(host, small_request(cfg_scale=1.0, prompt="a blue sphere",
                                              extension_args={"inputs": {"on": True}}))
    assert _pixels(one) == _pixels(other)


def test_wrappers_run_per_call_in_order_and_leave_the_unet_untouched(write_extension, make_host, clear_events):
    write_extension("outer", {"main.py": WRAPPER.format(name="outer", order=-1)})
    write_extension("inner", {"main.py": WRAPPER.format(name="inner", order=0)}, "Before = outer\n")
    host = make_host()
    before = _unet_state()
    plain = run_with_host(ExtensionHost(), small_request())

    wrapped = run_with_host(host, small_request(steps=3))
    call = [("outer", "enter"), ("inner", "enter"), ("inner", "exit"), ("outer", "exit")]
    assert clear_events == call * 3  # one UNet call (uncond and cond rows together) per step
    assert _pixels(run_with_host(host, small_request())) == _pixels(plain)

    boosted = run_with_host(host, small_request(extension_args={"inner": {"boost": True}}))
    assert _pixels(boosted) != _pixels(plain)
    _assert_untouched(before)
    assert _pixels(run_with_host(ExtensionHost(), small_request())) == _pixels(plain)
    assert wrapped.images and host.get("outer").errors == [] and host.get("inner").errors == []


def test_two_calls_per_step_when_prompt_lengths_differ(write_extension, make_host, clear_events):
    write_extension("residuals", {"main.py": RESIDUALS})
    host = make_host()
    long_negative = ", ".join(["blurry"] * 60)  # more than 75 tokens: its own UNet call
    run_with_host(host, small_request(steps=1, negative_prompt=long_negative))
    assert clear_events == [("residuals", (0, 1, (0,), (True,))), ("residuals", (0, 1, (0,), (False,)))]


def test_a_failing_unet_call_extension_is_isolated(write_extension, make_host):
    write_extension("raiser", {"main.py": RAISER})
    host = make_host()
    before = _unet_state()
    plain = run_with_host(ExtensionHost(), small_request())
    result = run_with_host(host, small_request())

    assert _pixels(result) == _pixels(plain)
    raiser = host.get("raiser")
    assert raiser.state is ExtensionState.LOADED
    messages = [error.message for error in raiser.errors]
    assert [error.where for error in raiser.errors] == ["hook UNET_CALL"] * 4  # each once, though 2 steps ran
    assert "unet call exploded" in messages[0] and "hooked wrapper exploded" in messages[1]
    assert "shape" in messages[2] and "RuntimeError: wrapper exploded" in messages[3]
    _assert_untouched(before)


@pytest.mark.parametrize("api", ["1.1", ">=1.1,<2"])
def test_extensions_written_for_api_1_1_load(write_extension, make_host, api):
    write_extension("newer", {"main.py": INPUTS}, f"Api = {api}\n")
    assert make_host().get("newer").loaded


def test_a_newer_minor_version_loads_with_a_note(write_extension, make_host):
    write_extension("future", {"main.py": INPUTS}, f"Api = 1.{API_MINOR + 1}\n")
    record = make_host().get("future")
    assert record.loaded
    assert any(f"1.{API_MINOR + 1}" in message and f"1.{API_MINOR}" in message for message in record.messages)
