"""The demo model's acceptance criteria, checked against `evaluate.evaluate`'s scores and printed as a table.

Targets stated as numbers (txt2img at CFG 7: foreground and background colour >= 90 %, shape >= 70 %, over at
least 100 prompt/seed pairs) are used as given. Qualitative ones get an explicit bar, written next to each check:
"clearly lower" = every score lower and all three together at least 10 points lower; "keeps the init image" =
both colours of the init in >= 80 % of images and its foreground region overlapping the output's by IoU >= 0.5;
"follows the new prompt" = both colours of the new prompt in >= 80 %; "makes that colour rarer" = drawn in at least
`NEGATIVE_DROP` points fewer images (over 80 pairs one image is 1.25 points, so a drop of one or two is noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ATTRIBUTES = ("foreground", "background", "shape")
NEGATIVE_DROP = 5.0  # percentage points


@dataclass(frozen=True)
class Check:
    """One criterion: what it asks, what was measured, whether it holds."""

    name: str
    measured: str
    passed: bool


def _rates(scores: dict[str, Any], *path: str) -> dict[str, float]:
    node: Any = scores
    for key in path:
        node = node[key]
    return node


def _txt2img(scores: dict[str, Any]) -> Check:
    cfg7 = _rates(scores, "txt2img_cfg7", "all")
    passed = (cfg7["n"] >= 100 and cfg7["foreground"] >= 90 and cfg7["background"] >= 90
              and cfg7["shape"] >= 70)
    measured = (f"n={cfg7['n']}: foreground {cfg7['foreground']} %, background {cfg7['background']} %, "
                f"shape {cfg7['shape']} %")
    return Check("txt2img CFG 7: fg >= 90 %, bg >= 90 %, shape >= 70 %, n >= 100", measured, passed)


def _cfg(scores: dict[str, Any]) -> Check:
    cfg7, cfg1 = _rates(scores, "txt2img_cfg7", "all"), _rates(scores, "txt2img_cfg1", "all")
    lower = all(cfg1[key] < cfg7[key] for key in ATTRIBUTES)
    passed = lower and cfg7["all_three"] - cfg1["all_three"] >= 10
    measured = ", ".join(f"{key} {cfg1[key]} vs {cfg7[key]}" for key in (*ATTRIBUTES, "all_three"))
    return Check("CFG 1 clearly below CFG 7 (each lower, all three >= 10 points lower)", measured, passed)


def _negative(scores: dict[str, Any]) -> Check:
    negative = _rates(scores, "negative_prompt")
    without, named = negative["colour_drawn_without_negative"], negative["colour_drawn_with_negative"]
    return Check(f"negative prompt naming the colour makes it rarer (>= {NEGATIVE_DROP:g} points)",
                 f"{without} % -> {named} %", without - named >= NEGATIVE_DROP)


def _img2img(scores: dict[str, Any]) -> list[Check]:
    keeps = _rates(scores, "img2img", "strength_0.3_keeps_init")
    follows = _rates(scores, "img2img", "strength_1.0_matches_new_prompt")
    kept = keeps["foreground"] >= 80 and keeps["background"] >= 80 and keeps["region_iou_with_init"] >= 0.5
    followed = follows["foreground"] >= 80 and follows["background"] >= 80
    return [
        Check("img2img 0.3, new prompt: keeps init colours (>= 80 %) and layout (IoU >= 0.5)",
              f"foreground {keeps['foreground']} %, background {keeps['background']} %, shape {keeps['shape']} %, "
              f"IoU {keeps['region_iou_with_init']}", kept),
        Check("img2img 1.0: follows the new prompt (both colours >= 80 %)",
              f"foreground {follows['foreground']} %, background {follows['background']} %, "
              f"shape {follows['shape']} %", followed),
    ]


def _inpaint(scores: dict[str, Any]) -> Check:
    inpaint = _rates(scores, "inpaint")
    passed = inpaint["new_colour_inside"] >= 80 and inpaint["max_pixel_change_outside_mask"] == 0
    measured = (f"new colour {inpaint['new_colour_inside']} %, old colour {inpaint['old_colour_left']} %, "
                f"max change outside {inpaint['max_pixel_change_outside_mask']}")
    return Check("inpaint: new colour inside the mask (>= 80 %), outside unchanged", measured, passed)


def check(scores: dict[str, Any]) -> list[Check]:
    """Every criterion, in the issue's order."""
    return [_txt2img(scores), _cfg(scores), _negative(scores), *_img2img(scores), _inpaint(scores)]


def format_checks(checks: list[Check]) -> str:
    """One line per check: PASS/FAIL, the criterion, what was measured."""
    return "\n".join(f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.measured}" for c in checks)
