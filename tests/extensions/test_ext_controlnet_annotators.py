"""ControlNet's preprocessors added for issue 16: the weight-free shuffle, color, inpaint_only, lineart_standard and
blur_gaussian, and depth / depth_anything / normal_map / segmentation on tiny transformers models saved into a
temporary data folder (each equal to running the model directly with the same resizing), the ADE20K palette, the
missing-weights message, and /controlnet/detect over HTTP."""

from __future__ import annotations

import base64
import hashlib
import io
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from modules.errors import UserError
from modules.types import GenerationRequest
from tests.extensions.helpers import controlnet_module, noise_picture, png_b64

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def pre() -> Any:
    return controlnet_module("cnlib.preprocessors")


@pytest.fixture(scope="module")
def script() -> Any:
    return controlnet_module("scripts.controlnet")


# -- weight-free -----------------------------------------------------------------------------------------------------


def test_the_new_names_and_a1111s_labels(pre) -> None:
    assert list(pre.PREPROCESSORS)[6:] == ["shuffle", "color", "inpaint_only", "lineart_standard", "blur_gaussian",
                                           "depth", "depth_anything", "normal_map", "segmentation",
                                           "oneformer_ade20k", "openpose"]
    for label, name in [("t2ia_color_grid", "color"), ("depth_midas", "depth"), ("normal_midas", "normal_map"),
                        ("seg_ofade20k", "oneformer_ade20k"), ("seg_ufade20k", "segmentation"),
                        ("lineart_standard (from white bg & black line)", "lineart_standard")]:
        assert pre.find(label).name == name
    assert pre.find("blur_gaussian").settings(-1, -1, -1) == (512, 9.0, -1.0)
    assert pre.find("normal_map").settings(-1, -1, -1) == (512, 0.4, -1.0)


def _a1111_shuffle(image: np.ndarray, seed: int) -> np.ndarray:
    """The extension's content shuffle, with NumPy's global generator seeded as its `set_numpy_seed` does."""
    np.random.seed(seed)
    height, width = image.shape[:2]

    def disk() -> np.ndarray:
        noise = np.random.uniform(low=0, high=1, size=((height // 256) + 2, (width // 256) + 2, 1))
        noise = cv2.resize(noise, (width + 512, height + 512), interpolation=cv2.INTER_CUBIC)[256:256 + height,
                                                                                              256:256 + width]
        noise -= np.min(noise)
        return (noise / np.max(noise))[:, :, None]

    flow = np.concatenate([disk() * float(width - 1), disk() * float(height - 1)], axis=2).astype(np.float32)
    return cv2.remap(image, flow, None, cv2.INTER_LINEAR)


def test_shuffle_is_a1111s_warp_drawn_from_the_seed(pre) -> None:
    shuffle = pre.PREPROCESSORS["shuffle"]
    picture = noise_picture(96, 64)
    first = np.asarray(shuffle(picture, 64, extras=pre.Extras(seed=1234)))
    assert first.shape == (64, 96, 3)
    assert np.array_equal(first, _a1111_shuffle(np.asarray(picture), 1234))
    assert np.array_equal(first, np.asarray(shuffle(picture, 64, extras=pre.Extras(seed=1234))))
    assert not np.array_equal(first, np.asarray(shuffle(picture, 64, extras=pre.Extras(seed=1235))))
    assert shuffle(picture, 128, extras=pre.Extras(seed=1)).size == (192, 128)  # the short side at the resolution
    flat = shuffle(Image.new("RGB", (80, 80), (10, 200, 30)), 80, extras=pre.Extras(seed=5))
    assert np.unique(np.asarray(flat).reshape(-1, 3), axis=0).tolist() == [[10, 200, 30]]


def test_color_is_a_grid_of_64_pixel_cells(pre) -> None:
    quadrants = np.zeros((128, 128, 3), np.uint8)
    quadrants[:64, 64:] = (255, 0, 0)
    quadrants[64:, :64] = (0, 255, 0)
    quadrants[64:, 64:] = (20, 40, 250)
    assert np.array_equal(np.asarray(pre.PREPROCESSORS["color"](Image.fromarray(quadrants), 128)), quadrants)
    wide = np.asarray(pre.PREPROCESSORS["color"](noise_picture(200, 100), 100))
    assert wide.shape == (100, 200, 3)  # 3 x 1 cells: each column band is one colour
    assert all(len(np.unique(wide[:, x].reshape(-1, 3), axis=0)) == 1 for x in range(200))
    assert len(np.unique(wide.reshape(-1, 3), axis=0)) <= 3


def _mask(width: int, height: int) -> Image.Image:
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255  # the left half is repainted
    return Image.fromarray(mask)


def test_inpaint_only_makes_masked_pixels_minus_one(pre, script) -> None:
    picture = noise_picture(64, 32)
    detected = pre.PREPROCESSORS["inpaint_only"](picture, extras=pre.Extras(mask=_mask(64, 32)))
    assert detected.mode == "RGBA" and detected.size == (64, 32)
    alpha = np.asarray(detected)[..., 3]
    assert alpha[:, :32].max() == 0 and alpha[:, 32:].min() == 255
    unit = script.parse_unit({"module": "inpaint_only", "resize_mode": "Just Resize",
                              "image": {"image": png_b64(picture), "mask": png_b64(_mask(64, 32))}}, 0)
    control = script.control_tensor(unit, 64, 32, "cpu", torch.float32)[0].permute(1, 2, 0).numpy()
    assert control.shape == (32, 64, 3) and np.all(control[:, :32] == -1.0)
    assert np.array_equal(control[:, 32:], np.asarray(picture, np.float32)[:, 32:] / 255.0)
    unit = script.parse_unit({"module": "inpaint_only", "resize_mode": "Resize and Fill", "image": png_b64(picture),
                              "mask_image": png_b64(_mask(64, 32))}, 0)
    filled = script.control_tensor(unit, 64, 64, "cpu", torch.float32)[0].permute(1, 2, 0).numpy()
    assert np.all(filled[:16] == -1.0) and np.all(filled[48:] == -1.0)  # borders are outpainted
    assert filled[16:48, 32:].min() >= 0.0 and np.all(filled[16:48, :32] == -1.0)
    plain = pre.PREPROCESSORS["inpaint_only"](picture)  # no mask: nothing is masked
    assert np.asarray(plain)[..., 3].min() == 255


def test_inpaint_only_uses_the_img2img_mask_and_shuffle_the_job_seed(script, tmp_path: Path) -> None:
    state = script.ControlNetExtension()
    state.set_data_dir(tmp_path)
    folder = tmp_path / "models" / "ControlNet"
    folder.mkdir(parents=True)
    (folder / "tinycn.safetensors").write_bytes(b"not read here")
    init = noise_picture(64, 32)
    units = [{"module": "inpaint_only", "model": "tinycn"}, {"module": "shuffle", "model": "tinycn"}]
    request = GenerationRequest(mode="img2img", init_image=init, mask=_mask(64, 32), invert_mask=True, seed=-1,
                                subseed=-1)
    ctx = script.BeforeJobContext(request, {"units": units}, {})
    changed = state.before_job(ctx)
    inpaint, shuffle = (unit for _, unit in changed.extension_args["controlnet"]["active"])
    assert inpaint.picture is init and np.asarray(inpaint.mask)[:, :32].max() == 0  # inverted: the right half
    assert changed.seed >= 0 and shuffle.seed == (2 * changed.seed) & 0xFFFFFFFF  # A1111: seed + seed
    fixed = state.before_job(script.BeforeJobContext(request.with_changes(seed=5, subseed=7), {"units": units}, {}))
    assert fixed.seed == 5 and fixed.extension_args["controlnet"]["units"][1].seed == 12


def test_lineart_standard_marks_dark_lines(pre) -> None:
    array = np.full((64, 64, 3), 255, np.uint8)
    array[:, 30:33] = 0  # a black vertical line on white
    result = np.asarray(pre.PREPROCESSORS["lineart_standard"](Image.fromarray(array), 64))
    assert result.shape == (64, 64, 3)
    assert result[:, 30:33].min() > 100 and result[:, :20].max() == 0 and result[:, 45:].max() == 0


def test_blur_gaussian_is_opencvs_blur_at_threshold_a(pre) -> None:
    picture = noise_picture(96, 64)
    blurred = np.asarray(pre.PREPROCESSORS["blur_gaussian"](picture, 64, 2.5))
    assert np.array_equal(blurred, cv2.GaussianBlur(np.asarray(picture), (0, 0), 2.5))
    assert pre.PREPROCESSORS["blur_gaussian"](picture, 128).size == (192, 128)


# -- with weights ----------------------------------------------------------------------------------------------------


def test_the_ade20k_palette_is_exact() -> None:
    palette = controlnet_module("cnlib.ade20k").PALETTE
    assert len(palette) == 150 and palette[:3] == ((120, 120, 120), (180, 120, 120), (6, 230, 230))
    assert palette[-1] == (92, 0, 255)
    digest = hashlib.sha256(bytes(value for colour in palette for value in colour)).hexdigest()
    assert digest == "ce475c9151035eff51f4cf27fd7d906959b1480f6d15b9423ae2417c1b23a0ed"


def test_missing_weights_name_the_folder(pre, script, tmp_path: Path) -> None:
    state = script.ControlNetExtension()
    state.set_data_dir(tmp_path)
    extras = pre.Extras(annotators=controlnet_module("cnlib.annotators").AnnotatorSession(state.annotator_folders))
    expected = (f"the depth preprocessor needs its model, which is not in "
                f"{tmp_path / 'models' / 'ControlNet' / 'annotators' / 'midas'} (or "
                f"{tmp_path / 'extensions' / 'sd-webui-controlnet' / 'annotator' / 'downloads' / 'midas'}). Put a "
                "transformers depth-estimation model folder there (config.json, model.safetensors, "
                "preprocessor_config.json; for example Intel/dpt-hybrid-midas). Nothing is downloaded.")
    with pytest.raises(UserError) as error:
        pre.PREPROCESSORS["depth"](noise_picture(64, 64), 64, extras=extras)
    assert expected in str(error.value)
    with pytest.raises(UserError, match="semantic-segmentation model folder there"):
        script.preprocess(noise_picture(64, 64), "seg_ofade20k", 64, extras=extras)


def _tiny_dpt(folder: Path) -> None:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16],
                       fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5])
    DPTForDepthEstimation(config).save_pretrained(str(folder))
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(str(folder))


def _tiny_depth_anything(folder: Path) -> None:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(1)
    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                            image_size=28, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 16, 16],
                                 fusion_hidden_size=16, head_hidden_size=8, patch_size=14)
    DepthAnythingForDepthEstimation(config).save_pretrained(str(folder))
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True,
                      ensure_multiple_of=14).save_pretrained(str(folder))


def _tiny_segformer(folder: Path, labels: int = 150) -> None:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(2)
    config = SegformerConfig(num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
                             hidden_sizes=[8, 8, 16, 16], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16,
                             num_labels=labels)
    SegformerForSemanticSegmentation(config).save_pretrained(str(folder))
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(folder))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("annotators")
    root = data / "models" / "ControlNet" / "annotators"
    _tiny_dpt(root / "midas")
    _tiny_depth_anything(data / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / "depth_anything")
    _tiny_segformer(root / "uniformer")
    _tiny_segformer(root / "oneformer", labels=3)
    return data


@pytest.fixture
def session(script, data_dir: Path) -> Any:
    annotators = controlnet_module("cnlib.annotators")
    return annotators.AnnotatorSession(annotators.AnnotatorFolders.for_data_dir(data_dir))


def _direct(folder: Path, array: np.ndarray) -> Any:
    """The transformers model of `folder` run directly on a picture (its own processor's resizing)."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForDepthEstimation,
        AutoModelForSemanticSegmentation,
    )

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    family = AutoModelForDepthEstimation if "depth" in config.model_type or config.model_type == "dpt" \
        else AutoModelForSemanticSegmentation
    model = family.from_pretrained(str(folder), local_files_only=True).eval()
    pixels = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)(images=np.array(array),
                                                                                 return_tensors="pt")
    with torch.no_grad():
        output = model(**pixels)
    if family is AutoModelForDepthEstimation:
        depth = torch.nn.functional.interpolate(output.predicted_depth[:, None], size=array.shape[:2], mode="bicubic",
                                                align_corners=False)
        return depth[0, 0].numpy()
    logits = torch.nn.functional.interpolate(output.logits, size=array.shape[:2], mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)[0].numpy()


@pytest.mark.slow
@pytest.mark.parametrize("module, folder", [("depth_midas", "models/ControlNet/annotators/midas"), (
    "depth_anything", "extensions/sd-webui-controlnet/annotator/downloads/depth_anything")])
def test_depth_equals_the_transformers_model(script, session, data_dir: Path, module: str, folder: str) -> None:
    picture = noise_picture(128, 64)  # short side = the resolution, width a multiple of 64: neither resized nor padded
    detected = np.asarray(script.preprocess(picture, module, 64, extras=script.Extras(annotators=session)))
    depth = _direct(data_dir / folder, np.asarray(picture))
    expected = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).clip(0, 255).astype(np.uint8)
    assert detected.shape == (64, 128, 3) and np.array_equal(detected[..., 0], expected)
    assert np.array_equal(detected[..., 0], detected[..., 2]) and detected.min() == 0 and detected.max() == 255
    extras = script.Extras(annotators=session)
    assert script.preprocess(noise_picture(50, 40), module, 64, extras=extras).size == (80, 64)


@pytest.mark.slow
def test_normal_map_is_a1111s_from_the_depth(script, session, data_dir: Path) -> None:
    picture = noise_picture(128, 64)
    normal = np.asarray(script.preprocess(picture, "normal_midas", 64, 0.3, extras=script.Extras(annotators=session)))
    depth = _direct(data_dir / "models/ControlNet/annotators/midas", np.asarray(picture)).astype(np.float32)
    x, y = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3)
    scaled = (depth - depth.min()) / (depth.max() - depth.min())
    x[scaled < 0.3], y[scaled < 0.3] = 0, 0
    vector = np.stack([x, y, np.full_like(x, 2 * math.pi)], axis=2)
    vector /= np.sum(vector ** 2.0, axis=2, keepdims=True) ** 0.5
    expected = (vector * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1]
    assert normal.shape == (64, 128, 3) and np.abs(normal.astype(int) - expected).max() <= 1
    flat = np.asarray(script.preprocess(picture, "normal_map", 64, 1.0, extras=script.Extras(annotators=session)))
    assert (flat == (255, 127, 127)).all(axis=2).mean() > 0.99  # all background: every normal faces the viewer


@pytest.mark.slow
def test_segmentation_paints_the_best_class_in_ade20k_colours(script, session, data_dir: Path) -> None:
    palette = np.asarray(controlnet_module("cnlib.ade20k").PALETTE, np.uint8)
    picture = noise_picture(128, 64)
    detected = np.asarray(script.preprocess(picture, "seg_ufade20k", 64, extras=script.Extras(annotators=session)))
    classes = _direct(data_dir / "models/ControlNet/annotators/uniformer", np.asarray(picture))
    assert detected.shape == (64, 128, 3) and np.array_equal(detected, palette[classes])
    with pytest.raises(UserError, match="has 3 classes; the segmentation ControlNets read ADE20K's 150"):
        script.preprocess(picture, "oneformer_ade20k", 64, extras=script.Extras(annotators=session))


@pytest.mark.slow
def test_a_session_loads_once_and_pixel_perfect_applies(script, session, data_dir: Path) -> None:
    annotators = controlnet_module("cnlib.annotators")
    preprocessor = script.find("depth")
    first = session.load(preprocessor.weights, "depth")
    assert session.load(preprocessor.weights, "depth") is first
    session.release()
    assert session.load(preprocessor.weights, "depth") is not first
    unit = script.parse_unit({"module": "depth", "image": noise_picture(100, 50), "processor_res": 64,
                              "pixel_perfect": True, "resize_mode": "Just Resize"}, 0)
    unit.annotators = annotators.AnnotatorSession(annotators.AnnotatorFolders.for_data_dir(data_dir))
    assert script.unit_map(unit, 400, 200).size == (400, 200)
    unit.pixel_perfect = False
    assert script.unit_map(unit, 400, 200).size == (128, 64)


@pytest.fixture(scope="module")
def served(script, data_dir: Path) -> Iterator[Any]:
    import httpx
    from fastapi import FastAPI

    from modules.api.error_responses import install_error_handlers
    from modules.extensions.api import AppStartedContext
    from tests.api.api_helpers import LiveServer

    server = FastAPI()
    install_error_handlers(server)
    script.ControlNetExtension().app_started(AppStartedContext(server, data_dir))
    live = LiveServer(server).start()
    client = httpx.Client(base_url=live.url, timeout=120)
    try:
        yield client
    finally:
        client.close()
        live.stop()


@pytest.mark.slow
def test_detect_runs_a_preprocessor_with_weights_over_http(served: Any, script, data_dir: Path) -> None:
    picture = noise_picture(128, 64)
    response = served.post("/controlnet/detect", json={
        "controlnet_module": "depth_midas", "controlnet_processor_res": 64,
        "controlnet_input_images": [png_b64(picture)]})
    assert response.status_code == 200, response.text
    detected = np.asarray(Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))).convert("RGB"))
    depth = _direct(data_dir / "models/ControlNet/annotators/midas", np.asarray(picture))
    expected = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).astype(np.uint8)
    assert np.array_equal(detected[..., 1], expected)
    modules = served.get("/controlnet/module_list").json()["module_list"]
    assert {"depth", "depth_anything", "normal_map", "segmentation", "oneformer_ade20k", "inpaint_only"} <= set(modules)
    unmasked = served.post("/controlnet/detect", json={"controlnet_module": "inpaint_only",
                                                       "controlnet_input_images": [png_b64(picture)]})
    assert unmasked.status_code == 422 and "requires `controlnet_masks`" in unmasked.text
    masked = served.post("/controlnet/detect", json={"controlnet_module": "inpaint_only", "controlnet_input_images": [
        png_b64(picture)], "controlnet_masks": [png_b64(_mask(128, 64))]})
    alpha = np.asarray(Image.open(io.BytesIO(base64.b64decode(masked.json()["images"][0]))))[..., 3]
    assert alpha[:, :64].max() == 0 and alpha[:, 64:].min() == 255
    normal = served.post("/controlnet/detect", json={"controlnet_module": "normal_map",
                                                     "controlnet_input_images": [png_b64(picture)]})
    assert normal.status_code == 200  # normal_map reads depth's folder
    refused = served.post("/controlnet/detect", json={"controlnet_module": "seg_ofade20k",
                                                      "controlnet_input_images": [png_b64(picture)]})
    assert refused.status_code == 400 and "has 3 classes" in refused.text
