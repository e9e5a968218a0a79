"""The option table: every user setting as data (key, default, label, section, kind, bounds, choices).

Keys and defaults are AUTOMATIC1111's, so an A1111 `config.json` loads here and API clients that send
`override_settings` or `POST /sdapi/v1/options` keep working. Only the options this program honours (or that API
clients commonly set) are listed; any other key in a config file is preserved untouched by `modules.settings`.
Which options have an effect, and where they differ from A1111: docs/compat.md.

Extensions add their own rows with `OptionTable.with_specs()`; the table is immutable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping

from modules.devices import MODEL_DTYPE_AUTOMATIC, MODEL_DTYPES

OptionKind = Literal["bool", "int", "float", "str", "choice", "path", "list"]
ChoicesSource = Literal["checkpoints", "vaes", "samplers"]


class OptionValueError(ValueError):
    """A value that an option cannot hold; the message says what was expected (no key, no value)."""


@dataclass(frozen=True)
class OptionSpec:
    """One setting.

    `choices` is a static list; `choices_source` names a dynamic list the UI fills at run time ("checkpoints",
    "vaes", "samplers"). Dynamic names are checked where they are used (the model manager knows the files), so
    here any string is accepted for them. An option whose default is None also accepts None (e.g. no checkpoint).
    `minimum`/`maximum` bound numbers (inclusive); `step` is a UI hint only, as in A1111.
    """

    key: str
    default: Any
    label: str
    section: str
    kind: OptionKind
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    choices_source: ChoicesSource | None = None
    info: str = ""
    infotext: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _VALIDATORS:
            raise ValueError(f"option {self.key!r}: unknown kind {self.kind!r}")
        self.validate(self.default)  # a default that fails its own rules is a bug in the table

    @property
    def nullable(self) -> bool:
        return self.default is None

    def validate(self, value: Any) -> Any:
        """Return the value in canonical form (ints for int options, tuples for lists) or raise OptionValueError."""
        if value is None and self.nullable:
            return None
        return _VALIDATORS[self.kind](self, value)

    def describe(self) -> str:
        """Human description of the accepted values, used in error messages."""
        if self.kind == "choice" and self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return _describe_kind(self)


def _describe_kind(spec: OptionSpec) -> str:
    base = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a text",
            "path": "a folder path", "choice": "a name", "list": "a list of names"}[spec.kind]
    if spec.minimum is not None and spec.maximum is not None:
        return f"{base} from {_fmt(spec.minimum)} to {_fmt(spec.maximum)}"
    if spec.minimum is not None:
        return f"{base} of at least {_fmt(spec.minimum)}"
    if spec.maximum is not None:
        return f"{base} of at most {_fmt(spec.maximum)}"
    return base


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _fail(spec: OptionSpec) -> OptionValueError:
    return OptionValueError(f"expected {spec.describe()}")


def _check_range(spec: OptionSpec, number: float) -> None:
    if (spec.minimum is not None and number < spec.minimum) or (spec.maximum is not None and number > spec.maximum):
        raise _fail(spec)


def _validate_bool(spec: OptionSpec, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(spec)
    return value


def _validate_int(spec: OptionSpec, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(spec)
    if isinstance(value, float) and not value.is_integer():
        raise _fail(spec)
    number = int(value)
    _check_range(spec, number)
    return number


def _validate_float(spec: OptionSpec, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(spec)
    number = float(value)
    _check_range(spec, number)
    return number


def _validate_str(spec: OptionSpec, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(spec)
    return value


def _validate_choice(spec: OptionSpec, value: Any) -> str:
    if not isinstance(value, str) or (spec.choices and value not in spec.choices):
        raise _fail(spec)
    return value


def _validate_list(spec: OptionSpec, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise _fail(spec)
    if spec.choices and any(item not in spec.choices for item in value):
        raise _fail(spec)
    return tuple(value)


_VALIDATORS: dict[str, Callable[[OptionSpec, Any], Any]] = {
    "bool": _validate_bool, "int": _validate_int, "float": _validate_float, "str": _validate_str,
    "path": _validate_str, "choice": _validate_choice, "list": _validate_list,
}


class OptionTable(Mapping[str, OptionSpec]):
    """Immutable, ordered collection of option specs keyed by option key."""

    def __init__(self, specs: Iterable[OptionSpec]) -> None:
        self._specs: dict[str, OptionSpec] = {}
        for spec in specs:
            if spec.key in self._specs:
                raise ValueError(f"option {spec.key!r} is defined twice")
            self._specs[spec.key] = spec

    def __getitem__(self, key: str) -> OptionSpec:
        return self._specs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def defaults(self) -> dict[str, Any]:
        """Default value of every option, in table order."""
        return {key: spec.default for key, spec in self._specs.items()}

    def sections(self) -> dict[str, tuple[OptionSpec, ...]]:
        """Specs grouped by section label, sections in order of first appearance (the settings tab layout)."""
        grouped: dict[str, list[OptionSpec]] = {}
        for spec in self._specs.values():
            grouped.setdefault(spec.section, []).append(spec)
        return {name: tuple(specs) for name, specs in grouped.items()}

    def path_keys(self) -> frozenset[str]:
        """Options that name files or folders (every "path" option and the file name patterns): API clients may
        change them only when the server allows it (`--api-allow-path-options`)."""
        return frozenset(key for key, spec in self._specs.items() if spec.kind == "path" or key in PATH_PATTERN_KEYS)

    def with_specs(self, specs: Iterable[OptionSpec]) -> "OptionTable":
        """A new table with extra rows appended (extension settings); duplicate keys are an error."""
        return OptionTable([*self._specs.values(), *specs])


PATH_PATTERN_KEYS = frozenset({"samples_filename_pattern", "directories_filename_pattern", "grid_zip_filename_pattern"})
"""Text options that become parts of file paths (see `OptionTable.path_keys`)."""

# Section labels (A1111's names).
SAVING = "Saving images/grids"
PATHS = "Paths for saving"
SAVING_DIRS = "Saving to a directory"
SD = "Stable Diffusion"
SDXL = "Stable Diffusion XL"
VAE = "VAE"
IMG2IMG = "img2img"
SAMPLER = "Sampler parameters"
OPTIMIZATIONS = "Optimizations"
PREVIEWS = "Live previews"
UI = "User interface"
INFOTEXT = "Infotext"
UPSCALING = "Upscaling"
SYSTEM = "System"


def _flag(key: str, default: bool, label: str, section: str, **extra: Any) -> OptionSpec:
    return OptionSpec(key, default, label, section, "bool", **extra)


def _number(key: str, default: float, label: str, section: str, lo: float | None = None, hi: float | None = None,
            step: float | None = None, **extra: Any) -> OptionSpec:
    kind: OptionKind = "int" if isinstance(default, int) else "float"
    return OptionSpec(key, default, label, section, kind, minimum=lo, maximum=hi, step=step, **extra)


def _text(key: str, default: str, label: str, section: str, **extra: Any) -> OptionSpec:
    return OptionSpec(key, default, label, section, "str", **extra)


def _path(key: str, default: str, label: str, **extra: Any) -> OptionSpec:
    return OptionSpec(key, default, label, PATHS, "path", **extra)


def _choice(key: str, default: str | None, label: str, section: str, choices: tuple[str, ...] = (),
            source: ChoicesSource | None = None, **extra: Any) -> OptionSpec:
    return OptionSpec(key, default, label, section, "choice", choices=choices, choices_source=source, **extra)


def _list(key: str, default: tuple[str, ...], label: str, section: str, source: ChoicesSource | None = None,
          **extra: Any) -> OptionSpec:
    return OptionSpec(key, default, label, section, "list", choices_source=source, **extra)


IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp")

DEFAULT_OPTIONS: tuple[OptionSpec, ...] = (
    _flag("samples_save", True, "Always save all generated images", SAVING),
    _choice("samples_format", "png", "File format for images", SAVING, IMAGE_FORMATS),
    _flag("use_original_name_batch", True, "Use original name for output filename during batch process in extras tab",
          SAVING),
    _text("samples_filename_pattern", "", "Images filename pattern", SAVING,
          info="A1111 pattern tags such as [seed], [prompt_words], [model_name], [date]; empty = [seed] (or "
               "[seed]-[prompt_spaces] when not saving to a subdirectory)"),
    _flag("save_images_add_number", True, "Add number to filename when saving", SAVING),
    _text("grid_zip_filename_pattern", "", "Archive filename pattern", SAVING,
          info="the Zip button's archive; empty = [datetime]_[[model_name]]_[seed]-[seed_last]"),
    _flag("save_selected_only", True, "When using 'Save' button, only save a single selected image", SAVING),
    _flag("grid_save", True, "Always save all generated image grids", SAVING),
    _choice("grid_format", "png", "File format for grids", SAVING, IMAGE_FORMATS),
    _flag("grid_only_if_multiple", True, "Do not save grids consisting of one picture", SAVING),
    _number("n_rows", -1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size", SAVING,
            -1, 16, 1),
    _flag("enable_pnginfo", True, "Save text information about generation parameters as chunks to png files", SAVING),
    _flag("save_txt", False, "Create a text file next to every image with generation parameters.", SAVING),
    _number("jpeg_quality", 80, "Quality for saved jpeg images", SAVING, 1, 100, 1),
    _flag("webp_lossless", False, "Use lossless compression for webp images", SAVING),
    _flag("save_images_before_highres_fix", False, "Save a copy of image before applying highres fix.", SAVING),
    _flag("save_incomplete_images", False, "Save incomplete images", SAVING,
          info="save images of a batch that was interrupted mid-generation"),
    _path("outdir_samples", "", "Output directory for images; if empty, defaults to the directories below"),
    _path("outdir_txt2img_samples", "outputs/txt2img-images", "Output directory for txt2img images"),
    _path("outdir_img2img_samples", "outputs/img2img-images", "Output directory for img2img and inpaint images"),
    _path("outdir_save", "log/images", "Directory for saving images using the Save button"),
    _path("outdir_extras_samples", "outputs/extras-images", "Output directory for images from extras tab"),
    _path("outdir_grids", "", "Output directory for grids; if empty, defaults to the directories below"),
    _path("outdir_txt2img_grids", "outputs/txt2img-grids", "Output directory for txt2img grids"),
    _path("outdir_img2img_grids", "outputs/img2img-grids", "Output directory for img2img grids"),
    _flag("save_to_dirs", True, "Save images to a subdirectory", SAVING_DIRS),
    _flag("grid_save_to_dirs", True, "Save grids to a subdirectory", SAVING_DIRS),
    _flag("use_save_to_dirs_for_ui", False, "Save images to a subdirectory when using Save button", SAVING_DIRS),
    _text("directories_filename_pattern", "[date]", "Directory name pattern", SAVING_DIRS),
    _number("directories_max_prompt_words", 8, "Max prompt words for [prompt_words] pattern", SAVING_DIRS, 1, 20, 1),
    _number("api_max_request_mb", 100, "Largest API request or upload (MB)", SYSTEM, 1, 4096, 1,
            info="larger request bodies are refused with a 413; uploads in the web UI take effect after a restart"),
    _number("ESRGAN_tile", 192, "Tile size for ESRGAN upscalers.", UPSCALING, 0, 512, 16,
            info="0 = no tiling; applies to every upscaler model file (ESRGAN, RealESRGAN, SwinIR, DAT, ...)"),
    _number("ESRGAN_tile_overlap", 8, "Tile overlap for ESRGAN upscalers.", UPSCALING, 0, 48, 1,
            info="pixels of context around each tile; low values = visible seams"),
    _choice("sd_model_checkpoint", None, "Stable Diffusion checkpoint", SD, source="checkpoints",
            infotext="Model hash"),
    _number("sd_checkpoints_limit", 1, "Maximum number of checkpoints loaded at the same time", SD, 1, 10, 1),
    _choice("fp8_storage", "Disable", "FP8 weight", SD, ("Disable", "Enable for SDXL", "Enable"),
            info="store the UNet's weights in 8-bit floats: about half of fp16's memory, slightly different "
                 "pictures; checkpoints load again when this changes"),
    _flag("sd_checkpoints_keep_in_cpu", True, "Only keep one model on device", SD,
          info="will keep models other than the currently used one in RAM rather than VRAM"),
    _choice("emphasis", "Original", "Emphasis mode", SD, ("None", "Ignore", "Original", "No norm"),
            infotext="Emphasis", info="how (more:1.1) and (less:0.9) weights change the text embeddings"),
    _number("comma_padding_backtrack", 20, "Prompt word wrap length limit", SD, 0, 74, 1,
            info="in tokens: text after the last comma that does not fit a 75-token chunk moves to the next one"),
    _number("CLIP_stop_at_last_layers", 1, "Clip skip", SD, 1, 12, 1, infotext="Clip skip",
            info="ignore last layers of CLIP network; 1 ignores none, 2 ignores one layer"),
    _flag("upcast_attn", False, "Upcast cross attention layer to float32", SD),
    _flag("tiling", False, "Tiling", SD, infotext="Tiling", info="produce a tileable picture"),
    _choice("randn_source", "CPU", "Random number generator source.", SD, ("GPU", "CPU", "NV"), infotext="RNG",
            info="changes seeds drastically; CPU gives the same picture for a seed on every machine; GPU (A1111's "
                 "default) draws on the CUDA device as A1111 does there, and on the CPU where there is none; NV "
                 "draws the numbers an NVIDIA GPU draws, on any machine"),
    _flag("sdxl_clip_l_skip", False, "Clip skip SDXL", SDXL,
          info="enable Clip skip for the secondary clip model in SDXL; has no effect on SD 1.5 or SD 2.0/2.1"),
    _number("sdxl_crop_top", 0, "crop top coordinate", SDXL),
    _number("sdxl_crop_left", 0, "crop left coordinate", SDXL),
    _number("sdxl_refiner_low_aesthetic_score", 2.5, "SDXL low aesthetic score", SDXL,
            info="used for refiner model negative prompt"),
    _number("sdxl_refiner_high_aesthetic_score", 6.0, "SDXL high aesthetic score", SDXL,
            info="used for refiner model prompt"),
    _choice("sd_vae", "Automatic", "SD VAE", VAE, source="vaes", infotext="VAE",
            info="Automatic = use one with same filename as checkpoint; None = use VAE from checkpoint"),
    _flag("sd_vae_overrides_per_model_preferences", True, "Selected VAE overrides per-model preferences", VAE),
    _flag("auto_vae_precision", True, "Automatically revert VAE to 32-bit floats", VAE,
          info="when a half-precision VAE produces NaNs, decode again in 32-bit instead of returning a black image"),
    _flag("tiled_vae", False, "Decode and encode with the VAE in tiles", VAE,
          info="less memory for large images, slightly different pixels; without it tiles are used only when the "
               "whole image would not fit"),
    _text("img2img_background_color", "#ffffff",
          "With img2img, fill transparent parts of the input image with this color.", IMG2IMG),
    _number("inpainting_mask_weight", 1.0, "Inpainting conditioning mask strength", IMG2IMG, 0.0, 1.0, 0.01,
            infotext="Conditional mask weight"),
    _number("initial_noise_multiplier", 1.0, "Noise multiplier for img2img", IMG2IMG, 0.0, 1.5, 0.001,
            infotext="Noise multiplier"),
    _flag("img2img_fix_steps", False, "With img2img, do exactly the amount of steps the slider specifies.", IMG2IMG,
          info="normally you'd do less with less denoising"),
    _flag("overlay_inpaint", True, "Overlay original for inpaint", IMG2IMG,
          info="when inpainting, overlay the original image over the areas that weren't inpainted"),
    _list("hide_samplers", (), "Hide samplers in user interface", SAMPLER, source="samplers"),
    _number("eta_ddim", 0.0, "Eta for DDIM", SAMPLER, 0.0, 1.0, 0.01, infotext="Eta DDIM",
            info="noise multiplier; higher = more unpredictable results"),
    _number("eta_ancestral", 1.0, "Eta for k-diffusion samplers", SAMPLER, 0.0, 1.0, 0.01, infotext="Eta",
            info="noise multiplier; applies to ancestral samplers (i.e. Euler a) and SDE samplers"),
    _flag("pad_cond_uncond", False, "Pad prompt/negative prompt", SAMPLER,
          info="pad the shorter of prompt and negative prompt to the same length (faster with a batch of both; "
               "the picture changes slightly)"),
    _number("s_churn", 0.0, "sigma churn", SAMPLER, 0.0, 100.0, 0.01, infotext="Sigma churn",
            info="amount of stochasticity; applies to Euler, Heun and DPM2"),
    _number("s_tmin", 0.0, "sigma tmin", SAMPLER, 0.0, 10.0, 0.01, infotext="Sigma tmin"),
    _number("s_tmax", 0.0, "sigma tmax", SAMPLER, 0.0, 999.0, 0.01, infotext="Sigma tmax", info="0 = inf"),
    _number("s_noise", 1.0, "sigma noise", SAMPLER, 0.0, 1.1, 0.001, infotext="Sigma noise"),
    _number("skip_early_cond", 0.0, "Ignore negative prompt during early sampling", SAMPLER, 0.0, 1.0, 0.01,
            infotext="Skip Early CFG",
            info="disables CFG on a proportion of steps at the beginning of generation; 0=skip none; 1=skip all; "
                 "can both improve sample diversity/quality and speed up sampling"),
    _number("s_min_uncond", 0.0, "Negative Guidance minimum sigma", OPTIMIZATIONS, 0.0, 15.0, 0.01,
            infotext="NGMS",
            info="skip negative prompt for some steps when the image is almost ready; 0=disable, higher=faster"),
    _flag("s_min_uncond_all", False, "Negative Guidance minimum sigma all steps", OPTIMIZATIONS,
          infotext="NGMS all steps",
          info="By default, NGMS above skips every other step; this makes it skip all steps"),
    _number("token_merging_ratio", 0.0, "Token merging ratio", OPTIMIZATIONS, 0.0, 0.9, 0.1,
            infotext="Token merging ratio",
            info="0=disable, higher=faster; merges similar image tokens in the UNet's self-attention (ToMe), which "
                 "changes the picture; no effect on SDXL"),
    _number("token_merging_ratio_img2img", 0.0, "Token merging ratio for img2img", OPTIMIZATIONS, 0.0, 0.9, 0.1,
            info="only applies if non-zero and overrides above"),
    _number("token_merging_ratio_hr", 0.0, "Token merging ratio for high-res pass", OPTIMIZATIONS, 0.0, 0.9, 0.1,
            infotext="Token merging ratio hr", info="only applies if non-zero and overrides above"),
    # Load-time UNet speed-ups (modules.models.speedups); checkpoints load again when one changes.
    _flag("channels_last", False, "Use channels-last memory format for the UNet", OPTIMIZATIONS,
          info="UNet and VAE weights stored NHWC; for GPUs (measured 7 % slower on a CPU); pictures change by float "
               "rounding only; checkpoints load again when this changes"),
    _flag("fused_qkv", False, "Fuse attention QKV projections", OPTIMIZATIONS,
          info="one matrix multiply for query, key and value; for GPUs (no gain measured on a CPU); the UNet takes "
               "more memory (SD 1.x +7 %, SDXL +25 %); LoRAs still apply; checkpoints load again when this changes"),
    _flag("torch_compile", False, "Compile the UNet with torch.compile", OPTIMIZATIONS,
          info="for GPUs (Triton; measured 20 % slower on a CPU, where it needs a C++ compiler); the first job at "
               "each new size and batch waits for a compilation; runs eagerly with a warning in the log when "
               "compiling fails"),
    _choice("torch_compile_mode", "default", "torch.compile mode", OPTIMIZATIONS,
            ("default", "reduce-overhead", "max-autotune-no-cudagraphs"),
            info="reduce-overhead uses CUDA graphs on a GPU; max-autotune tries kernels longer at compile time"),
    _choice("model_dtype", MODEL_DTYPE_AUTOMATIC, "Model precision", OPTIMIZATIONS, MODEL_DTYPES,
            info="Automatic = as the launch flags say (float16 on GPUs, float32 on the CPU); bfloat16 = the UNet, text "
                 "encoders and VAE compute in bfloat16 (--no-half-vae keeps the VAE in float32): about 2x faster on "
                 "CPUs with AVX512-BF16 or AMX, slower on CPUs without (a warning says so); pictures change "
                 "slightly; checkpoints load again when this changes"),
    _number("eta_noise_seed_delta", 0, "Eta noise seed delta", SAMPLER, infotext="ENSD",
            info="added to the seed of the noise that ancestral/SDE samplers draw at each step"),
    _flag("live_previews_enable", True, "Show live previews of the created image", PREVIEWS),
    _choice("live_previews_image_format", "png", "Live preview file format", PREVIEWS, ("jpeg", "png", "webp")),
    _flag("show_progress_grid", True, "Show previews of all images generated in a batch as a grid", PREVIEWS),
    _number("show_progress_every_n_steps", 10, "Live preview display period", PREVIEWS, -1, 32, 1,
            info="in sampling steps: show a new live preview image every N sampling steps (0 = every step); "
                 "-1 = only show after completion of batch"),
    _choice("show_progress_type", "Approx cheap", "Live preview method", PREVIEWS, ("Full", "Approx cheap"),
            info="Full = VAE decode, slow but pretty; Approx cheap = linear latent-to-RGB, very fast. "
                 "(A1111's Approx NN and TAESD need downloaded weights and are not offered.)"),
    _number("live_preview_refresh_period", 1000, "Progressbar and preview update period", PREVIEWS, 100, None,
            info="in milliseconds"),
    _flag("return_grid", True, "Show grid in gallery", UI),
    _flag("do_not_show_images", False, "Do not show any images in gallery", UI),
    _flag("send_seed", True, "Send seed when sending prompt or image to other interface", UI),
    _flag("send_size", True, "Send size when sending prompt or image to another interface", UI),
    _list("quicksettings_list", ("sd_model_checkpoint",), "Quicksettings list", UI,
          info="setting entries that appear at the top of page rather than in settings tab"),
    _flag("disable_token_counters", False, "Disable prompt token counters", UI),
    _flag("add_model_hash_to_info", True, "Add model hash to generation information", INFOTEXT),
    _flag("add_model_name_to_info", True, "Add model name to generation information", INFOTEXT),
    _flag("add_version_to_infotext", True, "Add program version to generation information", INFOTEXT),
    _flag("disable_weights_auto_swap", True, "Disregard checkpoint information from pasted infotext", INFOTEXT),
)


def default_table() -> OptionTable:
    """The product's option table (a new object each call; tables are immutable anyway)."""
    return OptionTable(DEFAULT_OPTIONS)
