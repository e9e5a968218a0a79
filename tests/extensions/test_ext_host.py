"""The extension host: every hook fires in order, failures are isolated, incompatible extensions are refused,
enable/disable is persisted."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from modules.extensions.api import Hook
from modules.extensions.host import ExtensionHost
from modules.extensions.loader import ExtensionRoot, ExtensionState
from modules.models.identity import Family, ModelIdentity
from modules.samplers.registry import default_registry
from modules.settings import SettingsStore
from tests.extensions.helpers import run_with_host, small_request

RECORDER = '''
from modules.extensions.api import Hook, OptionSpec, UiTab, sampler_spec, with_infotext_params
from tests.extensions import ext_test_events

NAME = "{name}"
EVENTS = ext_test_events.EVENTS


def result_for(hook, ctx):
    if hook is Hook.UI_TABS:
        return UiTab(lambda: EVENTS.append((NAME, "tab built")), NAME.title(), NAME + "_tab")
    if hook is Hook.UI_SETTINGS:
        return [OptionSpec(NAME + "_strength", 1.0, "Strength", ctx.section, "float")]
    if hook is Hook.SAMPLERS:
        from diffusers import EulerDiscreteScheduler
        return [sampler_spec(NAME.title() + " Euler", EulerDiscreteScheduler)]
    if hook is Hook.BEFORE_JOB:
        return ctx.request.with_changes(prompt=ctx.request.prompt + " " + NAME)
    if hook is Hook.AFTER_IMAGE:
        ctx.infotext = with_infotext_params(ctx.infotext, {{NAME: "yes"}})
    return None


def recorder(hook):
    def callback(ctx):
        EVENTS.append((NAME, hook.name))
        return result_for(hook, ctx)
    return callback


def register(ext):
    for hook in Hook:
        ext.on(hook, recorder(hook), order={before_job_order} if hook is Hook.BEFORE_JOB else 0)
'''


def _pairs(events, hook):
    return [name for name, what in events if what == hook]


def test_every_hook_fires_in_order(write_extension, make_host, settings_store, clear_events, tmp_path):
    # beta loads first (alpha says After = beta), but alpha's BEFORE_JOB has order -1 so it runs first there.
    write_extension("alpha", {"main.py": RECORDER.format(name="alpha", before_job_order=-1)}, "After = beta\n")
    write_extension("beta", {"main.py": RECORDER.format(name="beta", before_job_order=0)})
    host = make_host()
    assert [r.name for r in host.active_records()] == ["beta", "alpha"]

    registry = default_registry()
    host.setup(registry, settings_store)
    host.hooks.app_started(SimpleNamespace())
    loader = host.hooks.wrap_model_loader(lambda record, plan: SimpleNamespace(identity=ModelIdentity(Family.SD1)))
    loader(SimpleNamespace(title="tiny.safetensors"), None)
    tabs = host.hooks.ui_tabs()
    with gr.Blocks():
        for tab in tabs:
            tab.build()
    result = run_with_host(host, small_request())
    host.hooks.image_saved(result.request, tmp_path / "x.png", result.images[0], result.infotexts[0])

    events = list(clear_events)
    assert {what for _, what in events} >= {hook.name for hook in Hook}
    for hook in ("SAMPLERS", "UI_SETTINGS", "APP_STARTED", "MODEL_LOADED", "UI_TABS", "AFTER_IMAGE", "IMAGE_SAVED"):
        assert _pairs(events, hook) == ["beta", "alpha"], hook
    assert _pairs(events, "BEFORE_JOB") == ["alpha", "beta"]
    assert _pairs(events, "POST_CFG") == ["beta", "alpha"] * 2  # two steps
    assert _pairs(events, "UNET_CALL") == ["beta", "alpha"] * 2  # one UNet call (uncond and cond rows) per step
    assert _pairs(events, "tab built") == ["beta", "alpha"]
    assert [t.title for t in tabs] == ["Beta", "Alpha"]
    # what the hooks returned took effect
    assert {"Alpha Euler", "Beta Euler"} <= set(registry.visible())
    assert settings_store.get()["alpha_strength"] == 1.0
    assert result.prompts[0].endswith("a red cube alpha beta")
    assert result.infotexts[0].endswith("beta: yes, alpha: yes")


RAISER = '''
from modules.extensions.api import Hook


def spoil_then_fail(ctx):
    ctx.noise_pred = ctx.noise_pred * 0  # a half-done change must not leak
    raise RuntimeError("step exploded")


def bad_image(ctx):
    ctx.image = None
    raise RuntimeError("image exploded")


def fail(ctx):
    raise RuntimeError("exploded")


def register(ext):
    ext.on(Hook.BEFORE_JOB, fail)
    ext.on(Hook.BEFORE_JOB, lambda ctx: "not a request")
    ext.on(Hook.POST_CFG, spoil_then_fail)
    ext.on(Hook.AFTER_IMAGE, bad_image)
    ext.on(Hook.APP_STARTED, fail)
'''

HEALTHY = '''
from modules.extensions.api import Hook
from tests.extensions import ext_test_events


def register(ext):
    ext.on(Hook.AFTER_IMAGE, lambda ctx: ext_test_events.EVENTS.append(("healthy", "AFTER_IMAGE")))
'''


def test_a_raising_extension_is_isolated(write_extension, make_host, clear_events):
    baseline = run_with_host(ExtensionHost(), small_request())
    write_extension("raiser", {"main.py": RAISER})
    write_extension("healthy", {"main.py": HEALTHY})
    host = make_host()
    host.hooks.app_started(SimpleNamespace())
    result = run_with_host(host, small_request())

    assert result.images[0].tobytes() == baseline.images[0].tobytes()
    assert result.prompts == baseline.prompts and result.infotexts == baseline.infotexts
    assert clear_events == [("healthy", "AFTER_IMAGE")]
    raiser = host.get("raiser")
    assert raiser.state is ExtensionState.LOADED
    wheres = [error.where for error in raiser.errors]
    assert wheres == ["hook APP_STARTED", "hook BEFORE_JOB", "hook BEFORE_JOB", "hook POST_CFG", "hook AFTER_IMAGE"]
    assert "step exploded" in raiser.errors[3].message  # reported once although the loop ran 2 steps
    info = {row.name: row for row in host.list_extensions()}
    assert info["raiser"].errors[0] == ("hook APP_STARTED", "RuntimeError: exploded")
    assert info["healthy"].errors == ()


def test_import_or_register_failure_keeps_nothing(write_extension, make_host, clear_events):
    ok_script = '''
    from modules.extensions.api import Hook
    from tests.extensions import ext_test_events
    def register(ext):
        ext.on(Hook.BEFORE_JOB, lambda ctx: ext_test_events.EVENTS.append(("half", "BEFORE_JOB")))
    '''
    write_extension("half", {"a_ok.py": ok_script, "b_bad.py": "raise ImportError('missing dependency')\n"})
    write_extension("badreg", {"main.py": "def register(ext):\n    raise ValueError('nope')\n"})
    write_extension("fine", {"main.py": "def register(ext):\n    pass\n"})
    host = make_host()
    run_with_host(host, small_request())

    half, badreg = host.get("half"), host.get("badreg")
    assert half.state is ExtensionState.FAILED and half.callbacks == [] and clear_events == []
    assert half.errors[0].where == "import of scripts/b_bad.py" and "missing dependency" in half.errors[0].message
    assert badreg.state is ExtensionState.FAILED and badreg.errors[0].where == "register() of scripts/main.py"
    assert not [name for name in sys.modules if name.startswith("sdwebui_extensions.half")]
    assert host.get("fine").state is ExtensionState.LOADED


IMPORT_MARKER = '''
from tests.extensions import ext_test_events
ext_test_events.EVENTS.append(("{name}", "imported"))
def register(ext):
    pass
'''


@pytest.mark.parametrize(("api", "loads"), [("2", False), ("0", False), ("1", True), ("1.3", True),
                                            (">=1,<2", True), (">=2", False), ("one", False)])
def test_api_version_is_checked_before_import(write_extension, make_host, clear_events, api, loads):
    write_extension("versioned", {"main.py": IMPORT_MARKER.format(name="versioned")}, f"Api = {api}\n")
    record = make_host().get("versioned")
    assert record.loaded is loads
    assert (clear_events == [("versioned", "imported")]) is loads
    if not loads:
        assert record.state is ExtensionState.SKIPPED
        assert any("API" in message or "Api" in message for message in record.messages)


@pytest.mark.parametrize(("requirement", "words"), [
    ("numpy<1.0", ("downgrade", "numpy")),
    ("torch>=99", ("upgrade", "torch")),
    ("Pillow==1.0.0", ("downgrade", "pillow")),
    ("surely-not-an-installed-package==1.0", ("not installed",)),
])
def test_requirements_that_change_packages_are_refused(write_extension, make_host, clear_events, requirement,
                                                        words):
    write_extension("needy", {"main.py": IMPORT_MARKER.format(name="needy")}, requirements=f"# deps\n{requirement}\n")
    record = make_host().get("needy")
    assert record.state is ExtensionState.SKIPPED and clear_events == []
    message = " ".join(record.messages).lower()
    assert all(word.lower() in message for word in words), message


def test_satisfied_and_uncheckable_requirements_load(write_extension, make_host):
    write_extension("content", {"main.py": IMPORT_MARKER.format(name="content")},
                    requirements="numpy>=1.0\nwinonly==9; sys_platform == 'win32'\n--index-url http://x\n")
    record = make_host().get("content")
    assert record.loaded
    assert any("--index-url" in message for message in record.messages)


def test_requires_and_ordering(write_extension, make_host):
    write_extension("a_first", {"main.py": "def register(ext):\n    pass\n"}, "Before = z_last\n")
    write_extension("m_needs", {"main.py": "def register(ext):\n    pass\n"}, "Requires = nothere|z_last\n")
    write_extension("orphan", {"main.py": "def register(ext):\n    pass\n"}, "Requires = missing-one\n")
    write_extension("z_last", {"main.py": "def register(ext):\n    pass\n"})
    host = make_host()
    assert [r.name for r in host.active_records()] == ["a_first", "z_last", "m_needs"]
    orphan = host.get("orphan")
    assert orphan.state is ExtensionState.SKIPPED and "missing-one" in orphan.messages[-1]


def test_disabling_is_persisted_and_applies(write_extension, ext_root, tmp_path, clear_events):
    write_extension("alpha", {"main.py": RECORDER.format(name="alpha", before_job_order=0)})
    write_extension("beta", {"main.py": RECORDER.format(name="beta", before_job_order=0)})
    config = tmp_path / "config.json"
    host = ExtensionHost([ExtensionRoot(ext_root)], settings=SettingsStore.open(config))
    host.load()
    host.set_enabled("beta", False)
    assert json.loads(config.read_text())["disabled_extensions"] == ["beta"]
    assert {cb.extension.name for cb in host.hooks.callbacks(Hook.BEFORE_JOB)} == {"alpha"}  # hooks stop at once
    assert [row.enabled for row in host.list_extensions()] == [True, False]

    clear_events.clear()
    again = ExtensionHost([ExtensionRoot(ext_root)], settings=SettingsStore.open(config))
    again.load()
    assert again.get("beta").state is ExtensionState.DISABLED
    assert again.get("alpha").loaded
    again.set_enabled("beta", True)
    assert json.loads(config.read_text())["disabled_extensions"] == []


def test_disable_all_and_extra(write_extension, ext_root, tmp_path, settings_store):
    builtin_root = tmp_path / "builtin"
    write_extension("shipped", {"main.py": "def register(ext):\n    pass\n"}, root=builtin_root)
    write_extension("user", {"main.py": "def register(ext):\n    pass\n"})
    roots = [ExtensionRoot(builtin_root, builtin=True), ExtensionRoot(ext_root)]
    host = ExtensionHost(roots, disable_all=True)
    host.load()
    assert [r.state for r in host.records] == [ExtensionState.DISABLED, ExtensionState.DISABLED]
    host = ExtensionHost(roots, settings=settings_store)
    host.load()  # registers the disable_all_extensions option
    settings_store.update({"disable_all_extensions": "extra"})
    host.load()
    assert [(r.name, r.state) for r in host.records] == [("shipped", ExtensionState.LOADED),
                                                          ("user", ExtensionState.DISABLED)]


def test_tab_build_failure_shows_a_message(write_extension, make_host):
    source = '''
    from modules.extensions.api import Hook, UiTab
    def build():
        raise RuntimeError("no tab today")
    def register(ext):
        ext.on(Hook.UI_TABS, lambda ctx: UiTab(build, "Broken", "broken_tab"))
    '''
    write_extension("tabby", {"main.py": source})
    host = make_host()
    with gr.Blocks():
        for tab in host.hooks.ui_tabs():
            tab.build()
    assert host.get("tabby").errors[0].where == "UI tab 'Broken'"


def test_image_replacement_reaches_the_result(write_extension, make_host):
    source = '''
    from PIL import ImageOps
    from modules.extensions.api import Hook
    def invert(ctx):
        ctx.image = ImageOps.invert(ctx.image.convert("RGB"))
    def register(ext):
        ext.on(Hook.AFTER_IMAGE, invert)
    '''
    write_extension("inverter", {"main.py": source})
    plain = run_with_host(ExtensionHost(), small_request())
    inverted = run_with_host(make_host(), small_request())
    expected = Image.eval(plain.images[0].convert("RGB"), lambda v: 255 - v)
    assert inverted.images[0].tobytes() == expected.tobytes()
