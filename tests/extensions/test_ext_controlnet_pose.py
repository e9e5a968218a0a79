"""ControlNet's `openpose` preprocessor (issue 16): OpenPose's body tables and drawing pinned on hand-made keypoints
(COCO's 17 mapped to OpenPose's 18, the neck between the shoulders, exact colours, stick width and disc radius, low
scores left out), and, on a tiny VitPose and a tiny RT-DETR person detector saved into a temporary data folder, the
preprocessor's picture equal to our drawing of the keypoints transformers gives directly (the whole picture as one
box without a detector, the detector's "person" boxes with one); the missing-folder and wrong-model messages, and
/controlnet/detect over HTTP."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from modules.errors import UserError
from tests.extensions.helpers import controlnet_module, noise_picture, png_b64

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def pose() -> Any:
    return controlnet_module("cnlib.pose")


@pytest.fixture(scope="module")
def pre() -> Any:
    return controlnet_module("cnlib.preprocessors")


# -- the tables and the drawing --------------------------------------------------------------------------------------


def test_openposes_tables(pose) -> None:
    one_based = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13],
                 [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18]]
    assert [[a + 1, b + 1] for a, b in pose.LIMBS] == one_based
    assert len(pose.COLOURS) == 18 and pose.COLOURS[0] == (255, 0, 0) and pose.COLOURS[12] == (0, 0, 255)
    assert pose.COLOURS[17] == (255, 0, 85) and all(85 * (c // 85) == c for rgb in pose.COLOURS for c in rgb)
    # COCO keypoint k at (k, 100 + k): each lands at its OpenPose place, the neck between the shoulders (5, 6)
    person = pose.Person(np.array([[k, 100 + k] for k in range(17)], np.float32), np.ones(17, np.float32))
    points = pose.openpose_points(person)
    coco = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
    assert points == [(5.5, 105.5) if k is None else (float(k), 100.0 + k) for k in coco]
    person.scores[6] = 0.29  # below the threshold: the right shoulder and the neck are left out
    assert [i for i, p in enumerate(pose.openpose_points(person)) if p is None] == [1, 2]
    assert pose.openpose_points(person, threshold=0.2)[1] == (5.5, 105.5)


def _hand_made(pose) -> Any:
    keypoints = np.zeros((17, 2), np.float32)
    scores = np.zeros(17, np.float32)
    for coco, (x, y), score in [(0, (48, 20), 0.9), (5, (68, 40), 0.8), (6, (28, 40), 0.7), (8, (28, 70), 0.9),
                                (7, (68, 70), 0.2)]:  # the left elbow scores below 0.3
        keypoints[coco], scores[coco] = (x, y), score
    return pose.Person(keypoints, scores)


def test_a_hand_made_body_is_drawn_as_openpose_draws_it(pose) -> None:
    canvas = pose.draw_people(96, 96, [_hand_made(pose)])
    expected = {
        (48, 20): (255, 0, 0), (48, 40): (255, 85, 0), (28, 40): (255, 170, 0), (28, 70): (255, 255, 0),
        (68, 40): (85, 255, 0),  # keypoint discs in full colour: nose, neck, r shoulder, r elbow, l shoulder
        (38, 40): (153, 0, 0), (58, 40): (153, 51, 0), (28, 55): (153, 102, 0), (48, 30): (0, 0, 153),
        # limbs at 60%: neck-r shoulder, neck-l shoulder, r shoulder-r elbow, neck-nose
        (38, 44): (153, 0, 0), (38, 45): (0, 0, 0), (38, 36): (153, 0, 0), (38, 35): (0, 0, 0),  # half-width 4
        (44, 20): (255, 0, 0), (43, 20): (0, 0, 0), (52, 20): (255, 0, 0), (53, 20): (0, 0, 0),  # radius 4
        (68, 70): (0, 0, 0), (68, 55): (0, 0, 0),  # the left elbow and its limb are left out
    }
    assert {at: tuple(int(c) for c in canvas[at[1], at[0]]) for at in expected} == expected
    colours = {tuple(int(c) for c in rgb) for rgb in canvas.reshape(-1, 3)}
    assert colours == {(0, 0, 0), *expected.values()}
    two = pose.draw_people(96, 96, [_hand_made(pose), pose.Person(_hand_made(pose).keypoints + 200,
                                                                   _hand_made(pose).scores)])
    assert np.array_equal(two, canvas)  # a person outside the picture draws nothing into it


def test_the_openpose_preprocessor_is_listed_with_a_resolution_only(pre) -> None:
    openpose = pre.find("openpose")
    assert openpose.name == "openpose" and openpose.weights.folder == "vitpose" and openpose.needs_opencv
    assert openpose.sliders() == [{"name": "Preprocessor Resolution", "value": 512, "min": 64, "max": 2048,
                                   "step": 1.0}]
    assert all(pre.find(name) is None for name in ("openpose_full", "openpose_hand", "openpose_face"))


# -- on tiny models --------------------------------------------------------------------------------------------------


def _tiny_vitpose(folder: Path, keypoints: int = 17) -> None:
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                     image_size=[64, 48], patch_size=[8, 8], out_indices=[2])
    model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=keypoints))
    with torch.no_grad():  # every other heatmap lifted above the keypoint threshold, the rest pushed below it
        model.head.conv.bias.copy_(torch.tensor([1.0 if k % 2 == 0 else -1.0 for k in range(keypoints)]))
    model.save_pretrained(str(folder))
    VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(str(folder))


def _tiny_rtdetr(folder: Path, labels: dict[int, str]) -> None:
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    torch.manual_seed(1)
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrConfig(backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=[16, 16, 32],
                          encoder_ffn_dim=32, encoder_attention_heads=2, d_model=16, num_queries=10,
                          decoder_in_channels=[16, 16, 16], decoder_ffn_dim=32, decoder_layers=1,
                          decoder_attention_heads=2, num_denoising=0, id2label=labels,
                          label2id={name: label for label, name in labels.items()})
    RTDetrForObjectDetection(config).save_pretrained(str(folder))
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(str(folder))


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """"plain": a VitPose only; "detector": a VitPose and a person detector ("person" is class 1);
    "wrong": a 16-keypoint VitPose and a detector without "person"."""
    dirs = {name: tmp_path_factory.mktemp(name) for name in ("plain", "detector", "wrong")}
    _tiny_vitpose(dirs["plain"] / "models" / "ControlNet" / "annotators" / "vitpose")
    a1111 = dirs["detector"] / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads"
    _tiny_vitpose(a1111 / "vitpose")
    _tiny_rtdetr(dirs["detector"] / "models" / "ControlNet" / "annotators" / "person_detector", {0: "cat",
                                                                                                  1: "person"})
    _tiny_vitpose(dirs["wrong"] / "models" / "ControlNet" / "annotators" / "vitpose", keypoints=16)
    _tiny_rtdetr(dirs["wrong"] / "models" / "ControlNet" / "annotators" / "person_detector", {0: "cat", 1: "dog"})
    return dirs


def _extras(pre, data_dir: Path) -> Any:
    annotators = controlnet_module("cnlib.annotators")
    return pre.Extras(annotators=annotators.AnnotatorSession(annotators.AnnotatorFolders.for_data_dir(data_dir)))


def _direct_boxes(folder: Path, array: np.ndarray) -> list[list[float]]:
    """RT-DETR run directly: its class-1 ("person") detections scoring at least 0.3, as COCO boxes."""
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForObjectDetection.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        outputs = model(**processor(images=array, return_tensors="pt"))
    found = processor.post_process_object_detection(outputs, threshold=0.3, target_sizes=[array.shape[:2]])[0]
    order = torch.argsort(found["scores"], descending=True, stable=True)
    return [[x0, y0, x1 - x0, y1 - y0] for (x0, y0, x1, y1), label in
            zip(found["boxes"][order].tolist(), found["labels"][order].tolist()) if label == 1]


def _direct_people(pose, folder: Path, array: np.ndarray, boxes: list[list[float]]) -> list[Any]:
    """VitPose run directly on the boxes: the keypoints and scores transformers gives, as people."""
    from transformers import VitPoseForPoseEstimation, VitPoseImageProcessor

    processor = VitPoseImageProcessor.from_pretrained(str(folder), local_files_only=True)
    model = VitPoseForPoseEstimation.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        outputs = model(**processor(images=array, boxes=[boxes], return_tensors="pt"))
    found = processor.post_process_pose_estimation(outputs, boxes=[boxes])[0]
    return [pose.Person(result["keypoints"].numpy(), result["scores"].numpy()) for result in found]


@pytest.mark.slow
def test_openpose_without_a_detector_reads_the_whole_picture(pose, pre, data_dirs) -> None:
    picture = noise_picture(128, 64)  # short side = the resolution, width a multiple of 64: neither resized nor padded
    detected = np.asarray(pre.find("openpose")(picture, 64, extras=_extras(pre, data_dirs["plain"])))
    folder = data_dirs["plain"] / "models" / "ControlNet" / "annotators" / "vitpose"
    people = _direct_people(pose, folder, np.asarray(picture), [[0.0, 0.0, 128.0, 64.0]])
    scores = people[0].scores
    assert len(people) == 1 and (scores >= 0.3).sum() == 9 and (scores < 0.3).sum() == 8  # the lifted heatmaps
    assert detected.shape == (64, 128, 3) and detected.any()
    assert np.array_equal(detected, pose.draw_people(64, 128, people))


@pytest.mark.slow
def test_openpose_with_a_detector_reads_each_person(pose, pre, data_dirs) -> None:
    picture = noise_picture(128, 64, seed=3)
    array = np.asarray(picture)
    extras = _extras(pre, data_dirs["detector"])
    detected = np.asarray(pre.find("openpose")(picture, 64, extras=extras))
    boxes = _direct_boxes(data_dirs["detector"] / "models" / "ControlNet" / "annotators" / "person_detector", array)
    assert 1 <= len(boxes) < 10  # of the 10 queries, the "cat" detections are left out
    vitpose = data_dirs["detector"] / "extensions" / "sd-webui-controlnet" / "annotator" / "downloads" / "vitpose"
    people = _direct_people(pose, vitpose, array, boxes)
    assert len(people) == len(boxes) and detected.any()
    assert np.array_equal(detected, pose.draw_people(64, 128, people))
    assert not np.array_equal(detected, pose.draw_people(64, 128, _direct_people(pose, vitpose, array, [
        [0.0, 0.0, 128.0, 64.0]])))  # not the whole-picture box
    session = extras.annotators
    assert pose.person_boxes(session.load_optional(pose.PERSON_DETECTOR, "openpose"), array) == boxes
    assert pose.estimate(session.load(pose.VITPOSE, "openpose"), array, []) == []  # nobody: a black picture


@pytest.mark.slow
def test_missing_and_wrong_models_are_clear_errors(pre, data_dirs, tmp_path: Path) -> None:
    openpose = pre.find("openpose")
    expected = (f"the openpose preprocessor needs its model, which is not in "
                f"{tmp_path / 'models' / 'ControlNet' / 'annotators' / 'vitpose'} (or "
                f"{tmp_path / 'extensions' / 'sd-webui-controlnet' / 'annotator' / 'downloads' / 'vitpose'}). Put a "
                "transformers VitPose pose-estimation (COCO's 17 keypoints) model folder there (config.json, "
                "model.safetensors, preprocessor_config.json; for example usyd-community/vitpose-base-simple). "
                "Nothing is downloaded.")
    with pytest.raises(UserError) as error:
        openpose(noise_picture(64, 64), 64, extras=_extras(pre, tmp_path))
    assert expected in str(error.value)
    with pytest.raises(UserError, match="gives 16 keypoints; the body skeleton is drawn from COCO's 17"):
        openpose(noise_picture(64, 64), 64, extras=_extras(pre, data_dirs["wrong"]))
    annotators = controlnet_module("cnlib.annotators")
    session = annotators.AnnotatorSession(annotators.AnnotatorFolders.for_data_dir(data_dirs["wrong"]))
    with pytest.raises(UserError, match='the person detector in .*person_detector has no "person" class'):
        session.load_optional(controlnet_module("cnlib.pose").PERSON_DETECTOR, "openpose")


@pytest.fixture(scope="module")
def served(data_dirs) -> Iterator[Any]:
    import httpx
    from fastapi import FastAPI

    from modules.api.error_responses import install_error_handlers
    from modules.extensions.api import AppStartedContext
    from tests.api.api_helpers import LiveServer

    server = FastAPI()
    install_error_handlers(server)
    extension = controlnet_module("scripts.controlnet").ControlNetExtension()
    extension.app_started(AppStartedContext(server, data_dirs["plain"]))
    live = LiveServer(server).start()
    client = httpx.Client(base_url=live.url, timeout=120)
    try:
        yield client
    finally:
        client.close()
        live.stop()


@pytest.mark.slow
def test_detect_draws_the_pose_over_http(served, pose, data_dirs) -> None:
    picture = noise_picture(128, 64)
    response = served.post("/controlnet/detect", json={
        "controlnet_module": "openpose", "controlnet_processor_res": 64, "controlnet_input_images": [png_b64(picture)]})
    assert response.status_code == 200, response.text
    detected = np.asarray(Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))).convert("RGB"))
    folder = data_dirs["plain"] / "models" / "ControlNet" / "annotators" / "vitpose"
    people = _direct_people(pose, folder, np.asarray(picture), [[0.0, 0.0, 128.0, 64.0]])
    assert np.array_equal(detected, pose.draw_people(64, 128, people))
    assert "openpose" in served.get("/controlnet/module_list").json()["module_list"]
    refused = served.post("/controlnet/detect", json={"controlnet_module": "openpose_full",
                                                      "controlnet_input_images": [png_b64(picture)]})
    assert refused.status_code == 422 and "'openpose_full' is not available" in refused.text
