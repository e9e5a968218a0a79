"""The demo model's acceptance criteria: each check passes or fails on the bar it states."""

from __future__ import annotations

import copy
from typing import Any

from tools.demo_model.criteria import check, format_checks


def _rates(n: int, fg: float, bg: float, shape: float, all_three: float) -> dict[str, float]:
    return {"n": n, "foreground": fg, "background": bg, "shape": shape, "all_three": all_three}


PASSING: dict[str, Any] = {
    "txt2img_cfg7": {"all": _rates(192, 95.0, 99.0, 90.0, 88.0)},
    "txt2img_cfg1": {"all": _rates(192, 70.0, 85.0, 80.0, 60.0)},
    "negative_prompt": {"n": 80, "colour_drawn_without_negative": 90.0, "colour_drawn_with_negative": 60.0},
    "img2img": {
        "strength_0.3_keeps_init": {**_rates(16, 90.0, 100.0, 60.0, 50.0), "region_iou_with_init": 0.8},
        "strength_0.3_matches_new_prompt": _rates(16, 5.0, 0.0, 30.0, 0.0),
        "strength_1.0_matches_new_prompt": _rates(16, 90.0, 100.0, 90.0, 80.0),
    },
    "inpaint": {"n": 16, "new_colour_inside": 87.5, "old_colour_left": 6.0, "max_pixel_change_outside_mask": 0.0},
}


def _failed(scores: dict[str, Any]) -> list[str]:
    return [c.name for c in check(scores) if not c.passed]


def test_every_check_passes_on_scores_that_meet_the_targets() -> None:
    assert _failed(PASSING) == []
    assert format_checks(check(PASSING)).count("PASS") == 6


def test_each_bar_fails_when_its_number_misses_it() -> None:
    cases = [
        (("txt2img_cfg7", "all", "foreground"), 89.9, "txt2img CFG 7"),
        (("txt2img_cfg7", "all", "n"), 99, "txt2img CFG 7"),
        (("txt2img_cfg1", "all", "background"), 99.0, "CFG 1 clearly below"),  # equal to CFG 7: not lower
        (("txt2img_cfg1", "all", "all_three"), 79.0, "CFG 1 clearly below"),  # only 9 points lower
        (("negative_prompt", "colour_drawn_with_negative"), 90.0, "negative prompt"),
        (("negative_prompt", "colour_drawn_with_negative"), 86.0, "negative prompt"),  # 4 points: noise
        (("img2img", "strength_0.3_keeps_init", "region_iou_with_init"), 0.49, "img2img 0.3"),
        (("img2img", "strength_1.0_matches_new_prompt", "background"), 75.0, "img2img 1.0"),
        (("inpaint", "max_pixel_change_outside_mask"), 1.0, "inpaint"),
    ]
    for path, value, name in cases:
        scores = copy.deepcopy(PASSING)
        node = scores
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        failed = _failed(scores)
        assert len(failed) == 1 and failed[0].startswith(name), (path, failed)
