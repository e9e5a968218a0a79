"""What a job saves: pictures stopped early (interrupt, skip) only with `save_incomplete_images`, as in A1111."""

from __future__ import annotations

import types
from pathlib import Path

from PIL import Image

from modules.extensions.host import ExtensionHost
from modules.job_options import OutputOptions
from modules.paths import DataPaths
from modules.picture_names import JobNames
from modules.processing import GenerationService
from modules.types import GenerationRequest


def test_incomplete_pictures_are_saved_only_when_asked(tmp_path: Path) -> None:
    service = GenerationService(settings=None, models=None, samplers=None, networks=None,  # type: ignore[arg-type]
                                extensions=ExtensionHost(), styles=None, paths=DataPaths(tmp_path))  # type: ignore[arg-type]
    request = GenerationRequest(prompt="a fox", seed=5, width=8, height=8, n_iter=2)
    pictures = (Image.new("RGB", (8, 8), (1, 1, 1)), Image.new("RGB", (8, 8), (2, 2, 2)))
    output = types.SimpleNamespace(images=pictures, seeds=(5, 6), first_pass_images=(), incomplete=(1,))
    texts = ("a fox\nSteps: 20, Seed: 5", "a fox\nSteps: 20, Seed: 6")
    saved = service.save_outputs(request, output, texts, OutputOptions(), JobNames(request))  # type: ignore[arg-type]
    assert [path.name for path in saved] == ["00000-5.png"]  # the interrupted batch's picture is not kept
    again = service.save_outputs(request, output, texts, OutputOptions(save_incomplete_images=True),  # type: ignore
                                 JobNames(request))
    assert [path.name for path in again] == ["00001-5.png", "00002-6.png"]
