"""Command-line flags (AUTOMATIC1111's names where they apply) parsed into a frozen `LaunchOptions`.

`parse_args(argv)` is the only entry point: bad values (a port out of range, malformed `user:password` pairs, an
unreadable auth file, an unknown device) end in argparse's usual one-line error and exit status 2, never a
traceback. Flags that A1111 users commonly keep in `COMMANDLINE_ARGS` but that mean nothing here (xformers and
other attention switches, installer switches) are accepted and listed in `LaunchOptions.ignored_flags` so the
launcher can say they had no effect instead of refusing to start; the few whose silent absence would mislead
(`--share`, `--ngrok`, `--freeze-settings`, `--subpath`) stop the start with the reason.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from modules.paths import REPO_ROOT, DataPaths

DEFAULT_PORT = 7860
DEFAULT_API_ONLY_PORT = 7861  # A1111 serves --nowebui on 7861 unless --port is given
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")

# A1111 switches with no meaning in this program: accepted so existing launch scripts keep working.
IGNORED_A1111_FLAGS = (
    "--xformers", "--force-enable-xformers", "--xformers-flash-attention", "--opt-sdp-attention",
    "--opt-sdp-no-mem-attention", "--opt-split-attention", "--opt-split-attention-v1",
    "--opt-split-attention-invokeai", "--opt-sub-quad-attention", "--disable-opt-split-attention",
    "--opt-channelslast", "--upcast-sampling", "--lowram", "--always-batch-cond-uncond", "--disable-nan-check",
    "--skip-torch-cuda-test", "--skip-python-version-check", "--skip-version-check", "--skip-install",
    "--skip-prepare-environment", "--reinstall-torch", "--reinstall-xformers", "--update-check",
    "--update-all-extensions", "--no-download-sd-model", "--no-gradio-queue", "--autolaunch",
    "--enable-console-prompts", "--disable-console-progressbars", "--gradio-queue", "--administrator",
    "--cuda-malloc", "--cuda-stream", "--pin-shared-memory", "--no-half-controlnet", "--hide-ui-dir-config",
    "--disable-model-loading-ram-optimization", "--no-progressbar-hiding", "--disable-safe-unpickle",
    "--disable-extra-extensions", "--gradio-debug",
)
IGNORED_A1111_VALUE_FLAGS = (
    "--hypernetwork-dir", "--codeformer-models-path", "--gfpgan-models-path", "--bsrgan-models-path",
    "--ldsr-models-path", "--clip-models-path", "--textual-inversion-templates-dir", "--gradio-allowed-path",
    "--gradio-img2img-tool", "--gradio-inpaint-tool",
)
"""A1111 options that take a value and have no meaning here: accepted, value unused. (Extensions add their own
flags through their `preload.py`: `modules.extensions.preload`.)"""
REFUSED_A1111_FLAGS = {
    "--share": "Gradio share links are not offered (they need Gradio's servers); serve on your network with "
               "--listen and protect it with --gradio-auth",
    "--ngrok": "ngrok tunnels are not offered; serve on your network with --listen and protect it with --gradio-auth",
    "--freeze-settings": "settings can always be changed from the UI and the API here; protect the server with "
                         "--gradio-auth and --api-auth",
    "--subpath": "serving under a sub-path is not supported; give the reverse proxy its own host name",
}
"""A1111 flags that would change what the user relies on if ignored: refused at start with the reason."""
FORGE_EQUIVALENTS = {
    "--all-in-fp32": ("--no-half", "--no-half-vae"),
    "--vae-in-fp32": ("--no-half-vae",),
    "--always-low-vram": ("--medvram",),
    "--always-no-vram": ("--lowvram",),
    "--always-cpu": ("--use-cpu", "all"),
}
"""Forge's launch flags that have an A1111 equivalent here: replaced by it before parsing."""
IGNORED_FORGE_FLAGS = (
    "--always-gpu", "--always-high-vram", "--always-normal-vram", "--always-offload-from-vram", "--attention-split",
    "--attention-quad", "--attention-pytorch", "--disable-xformers", "--all-in-fp16", "--unet-in-bf16",
    "--unet-in-fp16", "--unet-in-fp8-e4m3fn", "--unet-in-fp8-e5m2", "--vae-in-fp16", "--vae-in-bf16", "--vae-in-cpu",
    "--clip-in-fp16", "--clip-in-fp32", "--clip-in-fp8-e4m3fn", "--clip-in-fp8-e5m2",
)
"""Forge's switches with no launch-flag equivalent here: accepted, with a hint where a setting does the job."""
FLAG_HINTS = {
    "--opt-channelslast": "Settings > Optimizations > Use channels-last memory format for the UNet",
    "--unet-in-bf16": "Settings > Optimizations > Model precision: bfloat16",
    "--vae-in-bf16": "Settings > Optimizations > Model precision: bfloat16",
    "--unet-in-fp8-e4m3fn": "Settings > Stable Diffusion > FP8 weight",
    "--unet-in-fp8-e5m2": "Settings > Stable Diffusion > FP8 weight",
    "--xformers": "attention always runs on PyTorch's scaled_dot_product_attention",
    "--opt-sdp-attention": "attention always runs on PyTorch's scaled_dot_product_attention",
    "--attention-pytorch": "attention always runs on PyTorch's scaled_dot_product_attention",
}
"""What to use instead of an ignored flag, where something here does its job (the start-up warning says it)."""


def flag_hint(flag: str) -> str:
    """The start-up warning's advice for an ignored flag ("" when there is none)."""
    return FLAG_HINTS.get(flag, "")


def forge_to_a1111(argv: Sequence[str]) -> list[str]:
    """`argv` with Forge's flags that have an A1111 equivalent (`FORGE_EQUIVALENTS`) replaced by it."""
    return [part for arg in argv for part in FORGE_EQUIVALENTS.get(arg, (arg,))]


USE_CPU_CHOICES = ("all", "sd", "interrogate", "gfpgan", "bsrgan", "esrgan", "scunet", "codeformer")

Credentials = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LaunchOptions:
    """Everything given on the command line, resolved: ports and devices are final values, auth is parsed."""

    listen: bool = False
    server_name: str | None = None
    port: int = DEFAULT_PORT
    data_dir: Path = REPO_ROOT
    ckpt: Path | None = None
    ckpt_dir: Path | None = None
    vae_dir: Path | None = None
    vae_path: Path | None = None
    models_dir: Path | None = None
    lora_dir: Path | None = None
    embeddings_dir: Path | None = None
    esrgan_models_path: Path | None = None
    realesrgan_models_path: Path | None = None
    swinir_models_path: Path | None = None
    scunet_models_path: Path | None = None
    dat_models_path: Path | None = None
    ui_settings_file: Path | None = None
    ui_config_file: Path | None = None
    gradio_auth: Credentials = field(default=(), repr=False)  # passwords stay out of logs
    api: bool = False
    nowebui: bool = False
    api_auth: Credentials = field(default=(), repr=False)
    api_server_stop: bool = False
    api_log: bool = False
    api_allow_path_options: bool = False
    allow_batch_dirs_outside_data: bool = False
    cors_allow_origins: tuple[str, ...] = ()
    cors_allow_origins_regex: str | None = None
    tls_keyfile: Path | None = None
    tls_certfile: Path | None = None
    timeout_keep_alive: int = 30
    device: str | None = None
    precision: str = "autocast"
    no_half: bool = False
    no_half_vae: bool = False
    medvram: bool = False
    medvram_sdxl: bool = False
    lowvram: bool = False
    no_hashing: bool = False
    theme: str | None = None
    enable_insecure_extension_access: bool = False
    disable_all_extensions: bool = False
    skip_load_model_at_start: bool = False
    log_level: str = "INFO"
    workers: int | str | None = None
    """--workers: a worker count, "auto" (one per GPU of the Ray cluster, 1 without GPUs), or None (no Ray)."""
    ray_address: str | None = None
    ignored_flags: tuple[str, ...] = ()
    extension_flags: Mapping[str, Any] = field(default_factory=dict)
    """The values of the flags extensions add (their `preload.py`), by argparse `dest` name."""

    @property
    def host(self) -> str:
        """Address to bind: --server-name, else 0.0.0.0 with --listen, else localhost only."""
        if self.server_name:
            return self.server_name
        return "0.0.0.0" if self.listen else "127.0.0.1"

    @property
    def api_enabled(self) -> bool:
        return self.api or self.nowebui

    @property
    def webui_enabled(self) -> bool:
        return not self.nowebui

    @property
    def paths(self) -> DataPaths:
        upscalers = (("ESRGAN", self.esrgan_models_path), ("RealESRGAN", self.realesrgan_models_path),
                     ("SwinIR", self.swinir_models_path), ("ScuNET", self.scunet_models_path),
                     ("DAT", self.dat_models_path))
        return DataPaths(self.data_dir, self.models_dir, self.lora_dir, self.embeddings_dir,
                         tuple((name, path) for name, path in upscalers if path is not None))

    @property
    def tls(self) -> bool:
        return self.tls_keyfile is not None

    @property
    def settings_file(self) -> Path:
        return self.ui_settings_file or self.paths.config_file

    @property
    def ui_config_path(self) -> Path:
        return self.ui_config_file or self.paths.ui_config_file

    @property
    def checkpoints_dir(self) -> Path:
        return self.ckpt_dir or self.paths.checkpoints

    @property
    def vae_models_dir(self) -> Path:
        return self.vae_dir or self.paths.vae

    @property
    def ray_enabled(self) -> bool:
        """Jobs run on Ray workers (`modules.jobs.ray_executor`) instead of a thread of this process."""
        return self.workers is not None or self.ray_address is not None

    @property
    def extension_installs_allowed(self) -> bool:
        """A1111 rule: installing extensions from the UI is refused when the server is reachable by others."""
        exposed = self.listen or bool(self.server_name)
        return self.enable_insecure_extension_access or not exposed


def parse_credentials(text: str) -> Credentials:
    """'user:pass,user2:pass2' -> (('user', 'pass'), ('user2', 'pass2')); the password may contain ':'."""
    pairs: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise argparse.ArgumentTypeError(f"expected user:password pairs separated by commas, got {item!r}")
        pairs.append((user.strip(), password))
    if not pairs:
        raise argparse.ArgumentTypeError("expected at least one user:password pair")
    return tuple(pairs)


def read_credentials_file(path: Path) -> Credentials:
    """An auth file as A1111 reads it: user:password pairs separated by commas and/or new lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    entries = [part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()]
    if not entries:
        raise argparse.ArgumentTypeError(f"{path} holds no user:password pairs")
    return parse_credentials(",".join(entries))


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {value}")
    return value


def _device(text: str) -> str:
    value = text.strip().lower()
    if not _DEVICE_PATTERN.match(value):
        raise argparse.ArgumentTypeError(f"expected cuda, cuda:N, mps or cpu, got {text!r}")
    return value


def _device_id(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a CUDA device index such as 0 or 1, got {text!r}")
    return int(text)


def _workers(text: str) -> int | str:
    value = text.strip().lower()
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of workers (1 or more) or auto, got {text!r}")
    return int(value)


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _path(text: str) -> Path:
    return Path(text).expanduser().absolute()


def _log_level(text: str) -> str:
    value = text.strip().upper()
    if value not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return value


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--listen", action="store_true",
                       help="listen on 0.0.0.0 so that other machines on the network can connect")
    group.add_argument("--server-name", metavar="HOST", default=None,
                       help="address or host name to bind (overrides --listen)")
    group.add_argument("--port", type=_port, default=None,
                       help=f"port to serve on (default {DEFAULT_PORT}; {DEFAULT_API_ONLY_PORT} with --nowebui)")
    group.add_argument("--gradio-auth", type=parse_credentials, metavar="USER:PASS[,USER2:PASS2]",
                       help="require a login for the web UI; comma-separate several users")
    group.add_argument("--gradio-auth-path", type=_path, metavar="FILE",
                       help="file with more web UI logins, same format as --gradio-auth (commas or one per line)")
    group.add_argument("--api", action="store_true", help="serve the /sdapi/v1 HTTP API next to the web UI")
    group.add_argument("--nowebui", action="store_true", help="serve only the HTTP API, without the web UI")
    group.add_argument("--api-auth", type=parse_credentials, metavar="USER:PASS[,USER2:PASS2]",
                       help="require HTTP basic auth for the API; comma-separate several users")
    group.add_argument("--api-log", action="store_true",
                       help="log every API request: status, method, path, client and seconds")
    group.add_argument("--api-server-stop", action="store_true",
                       help="allow stopping the server through the API (/sdapi/v1/server-stop)")
    group.add_argument("--api-allow-path-options", action="store_true",
                       help="let API clients change options that name files or folders (outdir_*, file name patterns); "
                            "off by default: such changes are refused with a 403")
    group.add_argument("--cors-allow-origins", type=_origins, default=(), metavar="ORIGINS",
                       help="comma-separated origins (https://host:port) whose pages may call the server (CORS)")
    group.add_argument("--cors-allow-origins-regex", metavar="REGEX", default=None,
                       help="origins matching this regular expression may call the server (CORS)")
    group.add_argument("--tls-keyfile", type=_existing_file, metavar="FILE",
                       help="serve HTTPS with this private key (with --tls-certfile)")
    group.add_argument("--tls-certfile", type=_existing_file, metavar="FILE",
                       help="serve HTTPS with this certificate (with --tls-keyfile)")
    group.add_argument("--timeout-keep-alive", type=_positive_int, default=30, metavar="SECONDS",
                       help="how long an idle HTTP connection is kept open (default 30)")
    group.add_argument("--theme", choices=("light", "dark"), default=None,
                       help="open the web UI in the light or dark theme (default: follow the browser)")
    group.add_argument("--enable-insecure-extension-access", action="store_true",
                       help="allow installing extensions from the UI even when listening on the network")
    group.add_argument("--disable-all-extensions", action="store_true",
                       help="start without loading any extension")


def _add_path_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("files")
    group.add_argument("--data-dir", type=_path, default=REPO_ROOT,
                       help="base folder of user data: models/, outputs/, extensions/, config.json "
                            "(default: the program folder)")
    group.add_argument("--ckpt", type=_path, metavar="FILE",
                       help="checkpoint to add to the list and load at start")
    group.add_argument("--ckpt-dir", type=_path, metavar="DIR",
                       help="folder with Stable Diffusion checkpoints (default: DATA_DIR/models/Stable-diffusion)")
    group.add_argument("--vae-dir", type=_path, metavar="DIR",
                       help="folder with VAE files (default: DATA_DIR/models/VAE)")
    group.add_argument("--vae-path", type=_existing_file, metavar="FILE",
                       help="use this VAE file with every checkpoint (the SD VAE setting is then ignored)")
    group.add_argument("--models-dir", type=_path, metavar="DIR",
                       help="the folder holding the model folders (default: DATA_DIR/models)")
    group.add_argument("--lora-dir", type=_path, metavar="DIR", help="LoRA folder (default: MODELS/Lora)")
    group.add_argument("--embeddings-dir", type=_path, metavar="DIR",
                       help="textual inversion folder (default: MODELS/embeddings)")
    for name, folder in (("esrgan", "ESRGAN"), ("realesrgan", "RealESRGAN"), ("swinir", "SwinIR"),
                         ("scunet", "ScuNET"), ("dat", "DAT")):
        group.add_argument(f"--{name}-models-path", type=_path, metavar="DIR",
                           help=f"{folder} upscaler models folder (default: MODELS/{folder})")
    group.add_argument("--ui-settings-file", type=_path, metavar="FILE",
                       help="settings file (default: DATA_DIR/config.json)")
    group.add_argument("--ui-config-file", type=_path, metavar="FILE",
                       help="UI defaults file (default: DATA_DIR/ui-config.json)")
    group.add_argument("--allow-batch-dirs-outside-data", action="store_true",
                       help="let img2img's Batch sub-tab read and write folders outside DATA_DIR (absolute paths "
                            "anywhere on this machine); off by default: such folders are refused (not an A1111 flag)")
    group.add_argument("--skip-load-model-at-start", action="store_true",
                       help="do not load a checkpoint at start; the first generation loads it")
    group.add_argument("--no-hashing", action="store_true",
                       help="do not compute checkpoints' sha256 when they load (infotexts then carry no Model hash "
                            "unless it was computed before)")


def _add_device_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("device and precision")
    group.add_argument("--device", type=_device, default=None,
                       help="cuda, cuda:N, mps or cpu (default: the first CUDA device if any, else MPS, else CPU)")
    group.add_argument("--device-id", type=_device_id, default=None, metavar="N",
                       help="CUDA device index (A1111 spelling of --device cuda:N)")
    group.add_argument("--precision", choices=("full", "half", "autocast"), default="autocast",
                       help="full = 32-bit floats; half = 16-bit; autocast = 16-bit weights where the device "
                            "supports it (default)")
    group.add_argument("--use-cpu", nargs="+", choices=USE_CPU_CHOICES, default=(), metavar="PART",
                       help="'all' or 'sd': run on the CPU (as --device cpu); other parts are accepted and run on "
                            "the device the models use")
    group.add_argument("--no-half", action="store_true", help="keep the model in 32-bit floats")
    group.add_argument("--no-half-vae", action="store_true", help="keep the VAE in 32-bit floats")
    group.add_argument("--medvram", action="store_true",
                       help="keep only the model part in use on the GPU (less VRAM, a little slower)")
    group.add_argument("--medvram-sdxl", action="store_true",
                       help="--medvram for SDXL checkpoints only (others stay on the GPU)")
    group.add_argument("--lowvram", action="store_true",
                       help="move weights to the GPU piece by piece (least VRAM, much slower)")
    group.add_argument("--log-level", "--loglevel", type=_log_level, default="INFO", dest="log_level",
                       help=f"console log level: {', '.join(LOG_LEVELS)} (default INFO)")


def _add_worker_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workers (Ray; see docs/scale-out.md, needs requirements-ray.txt)")
    group.add_argument("--workers", type=_workers, default=None, metavar="N|auto",
                       help="run jobs on N Ray workers, each with its own device and model cache (auto: one per "
                            "GPU, 1 without GPUs); starts a local Ray cluster unless --ray-address is given")
    group.add_argument("--ray-address", metavar="ADDRESS", default=None,
                       help="join this Ray cluster (for example ray://head:10001 or auto) and run the workers on "
                            "it; alone, it means --workers auto")


class _IgnoredValue(argparse.Action):
    """An A1111 option with a value that means nothing here: its name joins `ignored_flags`."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        namespace.ignored_flags = [*(namespace.ignored_flags or []), option_string]


class _Refused(argparse.Action):
    """An A1111 flag that is not offered and must not be ignored: the start stops with the reason."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} is not supported: {REFUSED_A1111_FLAGS[str(option_string)]}")


def _add_ignored_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("accepted for AUTOMATIC1111 compatibility, no effect here")
    for flag in IGNORED_A1111_FLAGS + IGNORED_FORGE_FLAGS:
        group.add_argument(flag, action="append_const", const=flag, dest="ignored_flags",
                           help=f"no effect; {flag_hint(flag)}" if flag_hint(flag) else "no effect")
    for flag in IGNORED_A1111_VALUE_FLAGS:
        group.add_argument(flag, action=_IgnoredValue, dest="ignored_flags", metavar="VALUE", help="no effect")
    refused = parser.add_argument_group("AUTOMATIC1111 flags refused here (the start stops and says why)")
    for flag in REFUSED_A1111_FLAGS:
        takes_value = flag in ("--ngrok", "--subpath")
        refused.add_argument(flag, action=_Refused, nargs=1 if takes_value else 0, dest="refused",
                             metavar="VALUE" if takes_value else None, help="not supported")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webui.py", description="Stable Diffusion web UI and AUTOMATIC1111-compatible API.",
        allow_abbrev=False)
    _add_server_flags(parser)
    _add_path_flags(parser)
    _add_device_flags(parser)
    _add_worker_flags(parser)
    _add_ignored_flags(parser)
    return parser


def _resolve_device(parser: argparse.ArgumentParser, device: str | None, device_id: int | None) -> str | None:
    if device_id is None:
        return device
    if device is None or device == "cuda":
        return f"cuda:{device_id}"
    if device == f"cuda:{device_id}":
        return device
    parser.error(f"--device-id {device_id} contradicts --device {device}")
    raise AssertionError  # parser.error exits


def _origins(text: str) -> tuple[str, ...]:
    """A1111's --cors-allow-origins: comma-separated origins."""
    return tuple(origin.strip() for origin in text.split(",") if origin.strip())


def command_line() -> list[str]:
    """This process's arguments followed by those of the `COMMANDLINE_ARGS` environment variable (shell-quoted), as
    A1111's launcher reads them (`webui-user.sh` sets it)."""
    extra = os.environ.get("COMMANDLINE_ARGS", "")
    try:
        return sys.argv[1:] + shlex.split(extra)
    except ValueError as exc:
        raise SystemExit(f"webui.py: error: COMMANDLINE_ARGS cannot be read ({exc}): {extra!r}") from None


def _data_dir(argv: Sequence[str]) -> Path:
    """The --data-dir of a command line (read before the rest: the extensions there may add flags)."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--data-dir", type=_path, default=REPO_ROOT)
    try:
        return early.parse_known_args(argv)[0].data_dir
    except (SystemExit, argparse.ArgumentError):  # a bad value: the full parse reports it
        return REPO_ROOT


def parse_args(argv: Sequence[str] | None = None) -> LaunchOptions:
    """Parse command-line arguments (`command_line()` when argv is None); exits with a message on bad input. The
    extensions' `preload.py` add their flags first (`modules.extensions.preload`)."""
    from modules.extensions.preload import add_extension_flags, extension_roots, flag_values

    arguments = forge_to_a1111(command_line() if argv is None else argv)
    parser = build_parser()
    extension_dests = add_extension_flags(parser, extension_roots(_data_dir(arguments)))
    ns = parser.parse_args(arguments)
    gradio_auth: Credentials = ns.gradio_auth or ()
    if ns.gradio_auth_path is not None:
        try:
            gradio_auth += read_credentials_file(ns.gradio_auth_path)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument --gradio-auth-path: {exc}")
    values = {f.name: getattr(ns, f.name) for f in fields(LaunchOptions) if hasattr(ns, f.name)}
    if (ns.tls_keyfile is None) != (ns.tls_certfile is None):
        parser.error("--tls-keyfile and --tls-certfile go together: give both to serve HTTPS")
    device = _resolve_device(parser, ns.device, ns.device_id)
    ignored = list(ns.ignored_flags or ())
    if {"all", "sd"} & set(ns.use_cpu):
        if device not in (None, "cpu"):
            parser.error(f"--use-cpu {' '.join(ns.use_cpu)} contradicts --device {device}")
        device = "cpu"
    else:
        ignored += [f"--use-cpu {part}" for part in ns.use_cpu]
    values.update(
        port=ns.port or (DEFAULT_API_ONLY_PORT if ns.nowebui else DEFAULT_PORT),
        gradio_auth=gradio_auth,
        api_auth=ns.api_auth or (),
        device=device,
        ignored_flags=tuple(ignored),
        extension_flags=dict(flag_values(ns, extension_dests)),
    )
    return LaunchOptions(**values)
