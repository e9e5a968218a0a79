"""The `openpose` preprocessor (body only): people's keypoints from transformers' VitPose, drawn as the OpenPose
body skeleton the openpose ControlNets were trained on.

- People: boxes of the class "person" from an optional object detector (`annotators/person_detector/`, e.g. an
  RT-DETR trained on COCO; detections scoring at least PERSON_SCORE); without that folder the whole picture is one
  box, which suits one person filling the picture and misses the rest of a crowd.
- Keypoints: VitPose (`annotators/vitpose/`, COCO's 17 keypoints) on each box, through its own image processor (the
  box's affine crop and the heatmaps' sub-pixel decoding); a VitPose+ model runs its COCO expert (dataset 0).
- Drawing: COCO's 17 keypoints become OpenPose's 18 (its order; the neck is the midpoint of the shoulders, present
  when both are), keypoints scoring below KEYPOINT_SCORE are left out, and each person is drawn on black as the
  A1111 extension's `draw_bodypose` draws: the 17 limbs as filled ellipses of half-width STICK_WIDTH in 60% of their
  colour, then each keypoint as a disc of radius RADIUS in its full colour (RGB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .annotators import DETECTOR, POSE, AnnotatorSession, Loaded, Weights, person_label

VITPOSE = Weights("vitpose", POSE, "usyd-community/vitpose-base-simple")
PERSON_DETECTOR = Weights("person_detector", DETECTOR, "PekingU/rtdetr_r50vd_coco_o365")
KEYPOINT_SCORE = 0.3
PERSON_SCORE = 0.3
STICK_WIDTH = 4
RADIUS = 4
LIMB_SHADE = 0.6

NECK = 1
COCO_FOR_OPENPOSE: tuple[int | None, ...] = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
"""For each OpenPose body keypoint (nose, neck, right shoulder, elbow, wrist, left shoulder, elbow, wrist, right
hip, knee, ankle, left hip, knee, ankle, right eye, left eye, right ear, left ear) its COCO keypoint (None: the
neck, made from the shoulders)."""
SHOULDERS = (5, 6)  # COCO's left and right shoulder

LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 0),
    (0, 14), (14, 16), (0, 15), (15, 17))
"""OpenPose's body limbs (pairs of OpenPose keypoints), in drawing order; limb i has colour COLOURS[i]."""

COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
"""OpenPose's colours (RGB): of limb i and of keypoint i."""

Point = tuple[float, float]


@dataclass(frozen=True)
class Person:
    """One person's COCO keypoints: `keypoints` (17 x 2, pixels x/y of the picture) and their `scores` (17)."""

    keypoints: np.ndarray
    scores: np.ndarray


def openpose_points(person: Person, threshold: float = KEYPOINT_SCORE) -> list[Point | None]:
    """OpenPose's 18 body keypoints of a person (None where left out: scored below `threshold`, or the neck
    without both shoulders)."""
    def point(index: int) -> Point | None:
        if float(person.scores[index]) < threshold:
            return None
        return float(person.keypoints[index][0]), float(person.keypoints[index][1])

    points: list[Point | None] = []
    for coco in COCO_FOR_OPENPOSE:
        if coco is not None:
            points.append(point(coco))
            continue
        left, right = point(SHOULDERS[0]), point(SHOULDERS[1])
        points.append(None if left is None or right is None else ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2))
    return points


def draw_body(canvas: np.ndarray, points: list[Point | None]) -> np.ndarray:
    """Draws one body (OpenPose's 18 keypoints) onto an RGB uint8 canvas, in place; returns the canvas."""
    from .preprocessors import opencv

    cv2 = opencv("openpose")
    for (first, second), colour in zip(LIMBS, COLOURS):
        a, b = points[first], points[second]
        if a is None or b is None:
            continue
        length = math.hypot(a[0] - b[0], a[1] - b[1])
        angle = math.degrees(math.atan2(a[1] - b[1], a[0] - b[0]))
        centre = (int((a[0] + b[0]) / 2), int((a[1] + b[1]) / 2))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(float(c) * LIMB_SHADE) for c in colour])
    for point, colour in zip(points, COLOURS):
        if point is not None:
            cv2.circle(canvas, (int(point[0]), int(point[1])), RADIUS, colour, thickness=-1)
    return canvas


def draw_people(height: int, width: int, people: list[Person], threshold: float = KEYPOINT_SCORE) -> np.ndarray:
    """The OpenPose body picture of `people`: each skeleton drawn on black, one after another; uint8 HxWx3."""
    canvas = np.zeros((height, width, 3), np.uint8)
    for person in people:
        draw_body(canvas, openpose_points(person, threshold))
    return canvas


def person_boxes(detector: Loaded | None, array: np.ndarray) -> list[list[float]]:
    """The people's boxes in a picture as COCO boxes (x, y, width, height): the detector's "person" detections
    scoring at least PERSON_SCORE, best first; without a detector the whole picture."""
    height, width = array.shape[:2]
    if detector is None:
        return [[0.0, 0.0, float(width), float(height)]]
    import torch

    inputs = detector.processor(images=array, return_tensors="pt")
    parameter = next(detector.model.parameters())
    with torch.inference_mode():
        outputs = detector.model(pixel_values=inputs["pixel_values"].to(parameter.device, parameter.dtype))
    found = detector.processor.post_process_object_detection(outputs, threshold=PERSON_SCORE,
                                                             target_sizes=[(height, width)])[0]
    person = person_label(detector.model.config)
    rows = sorted(zip(found["scores"].tolist(), found["labels"].tolist(), found["boxes"].tolist()),
                  key=lambda row: -row[0])
    return [[x0, y0, x1 - x0, y1 - y0] for _, label, (x0, y0, x1, y1) in rows if label == person]


def estimate(pose: Loaded, array: np.ndarray, boxes: list[list[float]]) -> list[Person]:
    """VitPose's COCO keypoints for each box of a picture (none without boxes)."""
    if not boxes:
        return []
    import torch

    inputs = pose.processor(images=array, boxes=[boxes], return_tensors="pt")
    parameter = next(pose.model.parameters())
    pixels = inputs["pixel_values"].to(parameter.device, parameter.dtype)
    extra: dict[str, Any] = {}
    if int(getattr(pose.model.config.backbone_config, "num_experts", 1)) > 1:
        extra["dataset_index"] = torch.zeros(pixels.shape[0], dtype=torch.long, device=parameter.device)
    with torch.inference_mode():
        outputs = pose.model(pixel_values=pixels, **extra)
    outputs.heatmaps = outputs.heatmaps.float()
    found = pose.processor.post_process_pose_estimation(outputs, boxes=[boxes])[0]
    return [Person(result["keypoints"].numpy(), result["scores"].numpy()) for result in found]


def openpose_map(session: AnnotatorSession, preprocessor: str, array: np.ndarray) -> np.ndarray:
    """The openpose preprocessor's picture: the body skeletons of the people VitPose finds, uint8 HxWx3."""
    pose = session.load(VITPOSE, preprocessor)
    boxes = person_boxes(session.load_optional(PERSON_DETECTOR, preprocessor), array)
    return draw_people(array.shape[0], array.shape[1], estimate(pose, array, boxes))
