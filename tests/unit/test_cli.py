"""Command-line parsing: A1111 flag names, resolved values, and clean errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.cli import LaunchOptions, build_parser, parse_args
from modules.paths import REPO_ROOT


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_defaults() -> None:
    opts = parse_args([])
    assert opts == LaunchOptions(extension_flags={"controlnet_dir": None, "controlnet_annotator_models_path": None})
    assert opts.port == 7860 and opts.host == "127.0.0.1"
    assert opts.data_dir == REPO_ROOT and opts.settings_file == REPO_ROOT / "config.json"
    assert opts.webui_enabled and not opts.api_enabled
    assert opts.precision == "autocast" and opts.device is None and opts.log_level == "INFO"


def test_server_flags() -> None:
    opts = parse_args(["--listen", "--port", "8000", "--api", "--theme", "dark", "--api-server-stop"])
    assert opts.host == "0.0.0.0" and opts.port == 8000 and opts.api_enabled and opts.theme == "dark"
    assert opts.api_server_stop
    assert parse_args(["--listen", "--server-name", "myhost"]).host == "myhost"


def test_nowebui_implies_api_and_uses_a1111_api_port() -> None:
    opts = parse_args(["--nowebui"])
    assert opts.api_enabled and not opts.webui_enabled and opts.port == 7861
    assert parse_args(["--nowebui", "--port", "9000"]).port == 9000


def test_paths_are_absolute_and_derived_from_data_dir(tmp_path: Path) -> None:
    opts = parse_args(["--data-dir", str(tmp_path), "--ckpt", str(tmp_path / "m.safetensors")])
    assert opts.data_dir == tmp_path
    assert opts.checkpoints_dir == tmp_path / "models" / "Stable-diffusion"
    assert opts.vae_models_dir == tmp_path / "models" / "VAE"
    assert opts.ui_config_path == tmp_path / "ui-config.json"
    assert opts.ckpt == tmp_path / "m.safetensors"
    custom = parse_args(["--ckpt-dir", str(tmp_path / "ck"), "--ui-settings-file", str(tmp_path / "c.json")])
    assert custom.checkpoints_dir == tmp_path / "ck" and custom.settings_file == tmp_path / "c.json"
    assert parse_args(["--data-dir", "relative"]).data_dir.is_absolute()


def test_auth_pairs_passwords_may_contain_colons() -> None:
    opts = parse_args(["--gradio-auth", "alice:se:cret, bob:pw", "--api-auth", "api:key"])
    assert opts.gradio_auth == (("alice", "se:cret"), ("bob", "pw"))
    assert opts.api_auth == (("api", "key"),)
    assert "se:cret" not in repr(opts)


def test_auth_file_adds_users(tmp_path: Path) -> None:
    auth = tmp_path / "auth.txt"
    auth.write_text("carol:1,dave:2\n\neve:3\n")
    opts = parse_args(["--gradio-auth", "a:b", "--gradio-auth-path", str(auth)])
    assert opts.gradio_auth == (("a", "b"), ("carol", "1"), ("dave", "2"), ("eve", "3"))


@pytest.mark.parametrize("argv, fragment", [
    (["--port", "70000"], "between 1 and 65535"),
    (["--port", "http"], "expected a port number"),
    (["--gradio-auth", "nopassword"], "user:password"),
    (["--api-auth", ":pw"], "user:password"),
    (["--device", "tpu"], "cuda, cuda:N, mps or cpu"),
    (["--device", "cpu", "--device-id", "1"], "contradicts"),
    (["--device-id", "x"], "CUDA device index"),
    (["--precision", "double"], "invalid choice"),
    (["--theme", "blue"], "invalid choice"),
    (["--log-level", "loud"], "expected one of"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_values_give_a_parser_message(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert fragment in _error(argv, capsys)


def test_missing_or_empty_auth_file_is_a_parser_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot read" in _error(["--gradio-auth-path", str(tmp_path / "none.txt")], capsys)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert "no user:password pairs" in _error(["--gradio-auth-path", str(empty)], capsys)


def test_device_selection() -> None:
    assert parse_args(["--device", "CUDA:1"]).device == "cuda:1"
    assert parse_args(["--device-id", "2"]).device == "cuda:2"
    assert parse_args(["--device", "cuda", "--device-id", "3"]).device == "cuda:3"
    assert parse_args(["--device", "mps"]).device == "mps"


def test_memory_and_precision_flags() -> None:
    opts = parse_args(["--no-half", "--no-half-vae", "--medvram", "--lowvram", "--precision", "full",
                       "--skip-load-model-at-start", "--loglevel", "debug"])
    assert opts.no_half and opts.no_half_vae and opts.medvram and opts.lowvram and opts.precision == "full"
    assert opts.skip_load_model_at_start and opts.log_level == "DEBUG"
    opts = parse_args(["--medvram-sdxl", "--no-hashing"])
    assert opts.medvram_sdxl and opts.no_hashing and not opts.medvram and not opts.ignored_flags


def test_a1111_only_flags_are_accepted_and_reported() -> None:
    opts = parse_args(["--xformers", "--opt-sdp-attention", "--api"])
    assert opts.ignored_flags == ("--xformers", "--opt-sdp-attention") and opts.api


def test_extension_install_rule() -> None:
    assert parse_args([]).extension_installs_allowed
    assert not parse_args(["--listen"]).extension_installs_allowed
    assert parse_args(["--listen", "--enable-insecure-extension-access"]).extension_installs_allowed
    assert parse_args(["--disable-all-extensions"]).disable_all_extensions


def test_help_documents_every_flag() -> None:
    for action in build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"


def test_a1111_folder_flags_move_the_model_folders(tmp_path: Path) -> None:
    models, lora, embeddings, esrgan = (tmp_path / name for name in ("m", "l", "e", "x"))
    opts = parse_args(["--models-dir", str(models), "--lora-dir", str(lora), "--embeddings-dir", str(embeddings),
                       "--esrgan-models-path", str(esrgan)])
    paths = opts.paths
    assert (paths.models, paths.checkpoints, paths.vae) == (models, models / "Stable-diffusion", models / "VAE")
    assert (paths.lora, paths.embeddings, dict(paths.upscaler_dirs)) == (lora, embeddings, {"ESRGAN": esrgan})
    assert opts.checkpoints_dir == models / "Stable-diffusion" and paths.config_file == REPO_ROOT / "config.json"
    default = parse_args([]).paths
    assert (default.lora, default.upscaler_dirs) == (REPO_ROOT / "models" / "Lora", ())


def test_vae_path_must_be_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vae = tmp_path / "vae.safetensors"
    vae.write_bytes(b"x")
    assert parse_args(["--vae-path", str(vae)]).vae_path == vae
    assert "is not a file" in _error(["--vae-path", str(tmp_path / "missing.pt")], capsys)


def test_use_cpu_all_or_sd_means_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--use-cpu", "all"]).device == "cpu"
    assert parse_args(["--use-cpu", "sd", "interrogate"]).device == "cpu"
    opts = parse_args(["--use-cpu", "interrogate", "esrgan"])
    assert opts.device is None and opts.ignored_flags == ("--use-cpu interrogate", "--use-cpu esrgan")
    assert "contradicts --device cuda" in _error(["--use-cpu", "all", "--device", "cuda"], capsys)
    assert "invalid choice" in _error(["--use-cpu", "gpu"], capsys)


def test_tls_needs_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_text("k")
    cert.write_text("c")
    opts = parse_args(["--tls-keyfile", str(key), "--tls-certfile", str(cert), "--timeout-keep-alive", "5"])
    assert opts.tls and (opts.tls_keyfile, opts.tls_certfile, opts.timeout_keep_alive) == (key, cert, 5)
    assert not parse_args([]).tls and parse_args([]).timeout_keep_alive == 30
    assert "go together" in _error(["--tls-keyfile", str(key)], capsys)
    assert "must be at least 1" in _error(["--timeout-keep-alive", "0"], capsys)


@pytest.mark.parametrize(("argv", "reason"), [
    (["--share"], "--listen"), (["--ngrok", "token"], "ngrok tunnels"), (["--freeze-settings"], "--api-auth"),
    (["--subpath", "/sd"], "sub-path")])
def test_flags_that_cannot_be_ignored_stop_the_start_with_the_reason(argv: list[str], reason: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    error = _error(argv, capsys)
    assert f"{argv[0]} is not supported" in error and reason in error


def test_a1111_options_with_values_that_mean_nothing_here_are_reported() -> None:
    opts = parse_args(["--hypernetwork-dir", "/h", "--controlnet-dir", "/c", "--api-log", "--cuda-malloc"])
    assert opts.ignored_flags == ("--hypernetwork-dir", "--cuda-malloc") and opts.api_log
    assert opts.extension_flags["controlnet_dir"] == "/c"  # the ControlNet extension's own flag (its preload.py)


def test_extensions_add_their_flags_in_preload_py(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "extensions" / "mine"
    mine.mkdir(parents=True)
    (mine / "preload.py").write_text(
        "def preload(parser):\n    parser.add_argument('--my-level', type=int, default=2)\n", encoding="utf-8")
    broken = tmp_path / "extensions" / "broken"
    broken.mkdir()
    (broken / "preload.py").write_text("raise RuntimeError('no')\n", encoding="utf-8")
    opts = parse_args(["--data-dir", str(tmp_path), "--my-level", "5", "--controlnet-annotator-models-path", "a"])
    assert opts.extension_flags == {"controlnet_dir": None, "controlnet_annotator_models_path": "a", "my_level": 5}
    assert "broken: its preload.py failed (no)" in caplog.text  # reported; the other flags still work
    assert parse_args(["--data-dir", str(tmp_path)]).extension_flags["my_level"] == 2
    with pytest.raises(SystemExit):
        parse_args(["--my-level", "5"])  # another data directory: that extension and its flag are not there
    assert "--my-level" in capsys.readouterr().err


def test_forge_flags_map_to_their_a1111_equivalents_or_are_reported_with_a_hint() -> None:
    from modules.cli import flag_hint

    opts = parse_args(["--all-in-fp32", "--always-low-vram"])
    assert opts.no_half and opts.no_half_vae and opts.medvram and not opts.ignored_flags
    assert parse_args(["--vae-in-fp32"]).no_half_vae and parse_args(["--always-no-vram"]).lowvram
    assert parse_args(["--always-cpu"]).device == "cpu"
    opts = parse_args(["--unet-in-bf16", "--attention-pytorch", "--always-gpu"])
    assert opts.ignored_flags == ("--unet-in-bf16", "--attention-pytorch", "--always-gpu")
    assert "Model precision: bfloat16" in flag_hint("--unet-in-bf16") and flag_hint("--always-gpu") == ""


def test_commandline_args_follow_the_process_arguments(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["webui.py", "--api"])
    monkeypatch.setenv("COMMANDLINE_ARGS", "--xformers --port 7870 --lora-dir '/my loras'")
    opts = parse_args()
    assert opts.api and opts.port == 7870 and opts.lora_dir == Path("/my loras")
    assert opts.ignored_flags == ("--xformers",)
    monkeypatch.setenv("COMMANDLINE_ARGS", "--lora-dir 'unclosed")
    with pytest.raises(SystemExit, match="COMMANDLINE_ARGS cannot be read"):
        parse_args()
    monkeypatch.delenv("COMMANDLINE_ARGS")
    assert parse_args().port == 7860
