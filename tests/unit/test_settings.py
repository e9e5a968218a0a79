"""Option table, settings snapshots, config.json / ui-config.json handling and the settings store."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from modules.cli import LaunchOptions
from modules.errors import InvalidRequest
from modules.options import DEFAULT_OPTIONS, OptionSpec, OptionTable, OptionValueError, default_table
from modules.settings import ComponentConfig, Settings, SettingsNotSaved, SettingsStore, UiConfig

# A trimmed config.json as A1111 1.10 writes it: known keys, extension keys, and a retired option.
A1111_CONFIG = {
    "samples_save": True,
    "samples_format": "png",
    "outdir_txt2img_samples": "outputs/txt2img-images",
    "sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
    "CLIP_stop_at_last_layers": 2,
    "jpeg_quality": 95,
    "quicksettings_list": ["sd_model_checkpoint", "sd_vae"],
    "control_net_unit_count": 3,
    "ldsr_steps": 100,
    "sd_vae_as_default": True,
    "nested_extension_value": {"a": [1, 2]},
}


def test_a1111_keys_and_defaults() -> None:
    table = default_table()
    expected = {
        "sd_model_checkpoint": None, "sd_vae": "Automatic", "sd_checkpoints_limit": 1, "CLIP_stop_at_last_layers": 1,
        "outdir_samples": "", "outdir_txt2img_samples": "outputs/txt2img-images",
        "outdir_img2img_samples": "outputs/img2img-images", "samples_save": True, "samples_format": "png",
        "samples_filename_pattern": "", "save_to_dirs": True, "jpeg_quality": 80, "enable_pnginfo": True,
        "show_progress_every_n_steps": 10, "live_previews_enable": True, "img2img_fix_steps": False,
        "eta_ddim": 0.0, "eta_ancestral": 1.0, "initial_noise_multiplier": 1.0, "inpainting_mask_weight": 1.0,
        "upcast_attn": False, "return_grid": True, "disable_token_counters": False,
    }
    defaults = table.defaults()
    assert {key: defaults[key] for key in expected} == expected
    assert table["CLIP_stop_at_last_layers"].minimum == 1 and table["CLIP_stop_at_last_layers"].maximum == 12
    assert table["sd_model_checkpoint"].choices_source == "checkpoints"
    assert table["sd_vae"].choices_source == "vaes"
    assert table["hide_samplers"].choices_source == "samplers"
    assert {"Saving images/grids", "Paths for saving", "Stable Diffusion", "Sampler parameters", "Live previews",
            "User interface"} <= set(table.sections())


@pytest.mark.parametrize("key, value, expected", [
    ("jpeg_quality", 90.0, 90),
    ("eta_ddim", 1, 1.0),
    ("hide_samplers", ["Euler"], ("Euler",)),
    ("sd_model_checkpoint", None, None),
    ("samples_format", "webp", "webp"),
])
def test_validation_canonical_forms(key: str, value: object, expected: object) -> None:
    assert default_table()[key].validate(value) == expected


@pytest.mark.parametrize("key, value", [
    ("jpeg_quality", 0), ("jpeg_quality", 101), ("jpeg_quality", 80.5), ("jpeg_quality", True),
    ("samples_save", "yes"), ("samples_save", 1), ("eta_ddim", float("nan")), ("samples_format", "bmp"),
    ("outdir_samples", 3), ("sd_vae", None), ("hide_samplers", "Euler"),
])
def test_validation_rejects(key: str, value: object) -> None:
    with pytest.raises(OptionValueError):
        default_table()[key].validate(value)


def test_table_rejects_duplicates_and_bad_defaults() -> None:
    spec = OptionSpec("x", 1, "X", "S", "int")
    with pytest.raises(ValueError):
        OptionTable([spec, spec])
    with pytest.raises(OptionValueError):
        OptionSpec("y", 5, "Y", "S", "int", minimum=10)
    assert len(default_table().with_specs([spec])) == len(DEFAULT_OPTIONS) + 1


def test_defaults_snapshot_is_immutable() -> None:
    settings = Settings()
    assert settings["jpeg_quality"] == 80 and settings.jpeg_quality == 80
    with pytest.raises(AttributeError):
        settings.jpeg_quality = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        _ = settings.no_such_option
    with pytest.raises(TypeError):
        settings["jpeg_quality"] = 1  # type: ignore[index]


def test_a1111_config_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(A1111_CONFIG, indent=4))
    settings = Settings.load(path)
    assert settings.problems == ()
    assert settings.CLIP_stop_at_last_layers == 2 and settings["control_net_unit_count"] == 3
    assert settings.quicksettings_list == ("sd_model_checkpoint", "sd_vae")
    settings.save(path)
    saved = json.loads(path.read_text())
    assert {key: saved[key] for key in A1111_CONFIG} == A1111_CONFIG
    assert saved["eta_ancestral"] == 1.0  # defaults are written too, as A1111 does
    assert list(saved)[: len(A1111_CONFIG)] == list(A1111_CONFIG)  # the file's key order is kept


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "config.json")
    assert settings.problems == () and settings.known() == default_table().defaults()


def test_wrong_typed_values_fall_back_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"jpeg_quality": "high", "samples_save": False, "randn_source": "Quantum"}))
    settings = Settings.load(path)
    assert settings.jpeg_quality == 80 and settings.samples_save is False and settings.randn_source == "CPU"
    assert len(settings.problems) == 2
    assert "jpeg_quality" in settings.problems[0] and "'high'" in settings.problems[0]
    assert "jpeg_quality" in caplog.text


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", b"\xff\xfe\x00"])
def test_corrupt_config_is_backed_up_not_lost(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    settings = Settings.load(path)
    backups = list(tmp_path.glob("config.json.bak-*"))
    assert len(backups) == 1
    assert backups[0].read_bytes() == (content if isinstance(content, bytes) else content.encode())
    assert not path.exists() and settings.known() == default_table().defaults()
    assert len(settings.problems) == 1 and str(backups[0]) in settings.problems[0]
    path.write_text("{also broken")
    Settings.load(path)
    assert len(list(tmp_path.glob("config.json.bak-*"))) == 2  # a second backup never overwrites the first


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.json"
    Settings().with_overrides({"jpeg_quality": 50}).save(path)
    assert json.loads(path.read_text())["jpeg_quality"] == 50
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]


def test_overrides_return_a_copy() -> None:
    base = Settings()
    job = base.with_overrides({"CLIP_stop_at_last_layers": 2, "eta_ddim": 0.5})
    assert job.CLIP_stop_at_last_layers == 2 and job.eta_ddim == 0.5
    assert base.CLIP_stop_at_last_layers == 1 and base.eta_ddim == 0.0
    assert base.with_overrides({}) is base and base.with_overrides(None) is base


def test_overrides_list_every_unknown_key_and_bad_value() -> None:
    with pytest.raises(InvalidRequest) as exc_info:
        Settings().with_overrides({"bogus_b": 1, "bogus_a": 2, "jpeg_quality": 500, "CLIP_stop_at_last_layers": 1})
    message = str(exc_info.value)
    assert "bogus_a, bogus_b" in message and "jpeg_quality" in message and "1 to 100" in message
    assert "CLIP_stop_at_last_layers" not in message


def test_preserved_unknown_keys_cannot_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(A1111_CONFIG))
    with pytest.raises(InvalidRequest, match="ldsr_steps"):
        Settings.load(path).with_overrides({"ldsr_steps": 5})


def test_extension_options_pick_up_preserved_values(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(A1111_CONFIG))
    store = SettingsStore.open(path)
    extra = OptionSpec("control_net_unit_count", 1, "ControlNet units", "ControlNet", "int", minimum=1, maximum=10)
    settings = store.replace_table(default_table().with_specs([extra]))
    assert settings.control_net_unit_count == 3
    assert store.update({"control_net_unit_count": 4}).control_net_unit_count == 4


def test_strict_constructor_and_launch_flags() -> None:
    launch = LaunchOptions(no_half=True)
    settings = Settings(values={"jpeg_quality": 70}, launch=launch)
    assert settings.jpeg_quality == 70 and settings.launch.no_half
    assert settings.with_overrides({"jpeg_quality": 60}).launch is launch
    with pytest.raises(InvalidRequest):
        Settings(values={"jpeg_quality": "x"})


def test_store_update_persists_and_notifies(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    store = SettingsStore.open(path)
    before = store.get()
    seen: list[tuple[int, int]] = []
    unsubscribe = store.subscribe(lambda old, new: seen.append((old.jpeg_quality, new.jpeg_quality)))
    after = store.update({"jpeg_quality": 90})
    assert store.get() is after and before.jpeg_quality == 80
    assert json.loads(path.read_text())["jpeg_quality"] == 90 and seen == [(80, 90)]
    unsubscribe()
    store.update({"jpeg_quality": 91}, persist=False)
    assert seen == [(80, 90)] and json.loads(path.read_text())["jpeg_quality"] == 90


def test_store_rejects_bad_updates_without_changing_anything(tmp_path: Path) -> None:
    store = SettingsStore.open(tmp_path / "config.json")
    with pytest.raises(InvalidRequest):
        store.update({"jpeg_quality": 95, "nope": 1})
    assert store.get().jpeg_quality == 80 and not (tmp_path / "config.json").exists()


def test_store_reports_a_failed_save_but_keeps_the_change(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = SettingsStore(Settings(), blocker / "config.json")  # parent is a file: cannot be written
    with pytest.raises(SettingsNotSaved, match="could not be saved"):
        store.update({"jpeg_quality": 70})
    assert store.get().jpeg_quality == 70


def test_store_concurrent_updates_are_all_applied(tmp_path: Path) -> None:
    store = SettingsStore.open(tmp_path / "config.json")
    keys = ["samples_save", "grid_save", "save_txt", "webp_lossless", "upcast_attn", "return_grid", "send_seed",
            "send_size"]
    threads = [threading.Thread(target=store.update, args=({key: not store.get()[key]},)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = store.get()
    assert all(final[key] != default_table()[key].default for key in keys)
    assert json.loads((tmp_path / "config.json").read_text()) == final.to_json()


def test_ui_config_created_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "ui-config.json"
    config = UiConfig.load(path)
    data = json.loads(path.read_text())
    assert data["txt2img/Sampling steps/value"] == 20
    assert data["txt2img/Sampling steps/minimum"] == 1 and data["txt2img/Sampling steps/maximum"] == 150
    assert data["img2img/Denoising strength/step"] == 0.01
    assert "txt2img/Prompt/minimum" not in data
    steps = config.component("txt2img/Sampling steps", ComponentConfig(20, 1, 150, 1))
    assert steps == ComponentConfig(20, 1, 150, 1)


def test_ui_config_applies_a1111_values_and_records_new_components(tmp_path: Path) -> None:
    path = tmp_path / "ui-config.json"
    path.write_text(json.dumps({"txt2img/Sampling steps/value": 30, "txt2img/Sampling steps/maximum": 200,
                                "txt2img/CFG Scale/value": "seven", "txt2img/Width/value": 4096,
                                "customscript/foo.py/txt2img/Bar/value": True}))
    config = UiConfig.load(path)
    assert config.component("txt2img/Sampling steps", ComponentConfig(20, 1, 150, 1)) == ComponentConfig(30, 1, 200, 1)
    assert config.component("txt2img/CFG Scale", ComponentConfig(7.0, 1.0, 30.0, 0.5)).value == 7.0
    assert config.component("txt2img/Width", ComponentConfig(512, 64, 2048, 8)).value == 2048
    assert any("CFG Scale" in problem for problem in config.problems)
    assert config.get("customscript/foo.py/txt2img/Bar/value") is True
    assert config.component("inpaint/Mask blur", ComponentConfig(4, 0, 64, 1)).value == 4
    assert config.save_if_changed() and not config.save_if_changed()
    saved = json.loads(path.read_text())
    assert saved["inpaint/Mask blur/value"] == 4 and saved["customscript/foo.py/txt2img/Bar/value"] is True


def test_corrupt_ui_config_is_backed_up(tmp_path: Path) -> None:
    path = tmp_path / "ui-config.json"
    path.write_text("{{{")
    config = UiConfig.load(path)
    assert len(list(tmp_path.glob("ui-config.json.bak-*"))) == 1 and len(config.problems) == 1
    assert json.loads(path.read_text())["txt2img/Sampling steps/value"] == 20
