"""A1111's file and folder name patterns (`modules.filenames`): every tag, skipping, sanitising, folders."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from PIL import Image

from modules.filenames import NameFields, folder_parts, prompt_words, render, sanitize_part

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
PICTURE = Image.new("RGB", (96, 64), (10, 20, 30))
FIELDS = NameFields(
    seed=1234, prompt="a red cat, on a (mat:1.2)", negative_prompt="blurry", styles=("Photo", "None"),
    style_prompts=("photo of {prompt}",), steps=20, cfg_scale=7.0, sampler="DPM++ 2M", scheduler="Karras",
    model_name="my model", model_hash="0123456789", vae_name="vae-ft-mse", clip_skip=2, denoising_strength=0.45,
    batch_size=2, batch_index=1, n_iter=3, iteration=2, all_seeds=(1233, 1234), job_timestamp="20260102030000",
    image=PICTURE, max_prompt_words=3, now=NOW)


@pytest.mark.parametrize("pattern, expected", [
    ("[seed]", "1234"),
    ("[seed_first]-[seed_last]", "1233-1234"),
    ("[steps]-[cfg]-[width]x[height]", "20-7.0-96x64"),
    ("[styles]", "Photo"),
    ("[sampler]", "DPM++ 2M"),
    ("[scheduler]", "Karras"),
    ("[sampler_scheduler]", "DPM++ 2M Karras"),
    ("[model_name]-[model_hash]", "my model-0123456789"),
    ("[vae_filename]", "vae-ft-mse"),
    ("[clip_skip]-[denoising]", "2-0.45"),
    ("[batch_number]-[batch_size]-[generation_number]", "2-2-6"),
    ("[date]", "2026-01-02"),
    ("[datetime]", "20260102030405"),
    ("[datetime<%Y_%m>]", "2026_01"),
    ("[datetime<%H><Asia/Tokyo>]", "12"),
    ("[datetime<%H><Nowhere/Else>]", "03"),
    ("[job_timestamp]", "20260102030000"),
    ("[prompt]", "a_red_cat,_on_a_(mat_1.2)"),
    ("[prompt_spaces]", "a red cat, on a (mat_1.2)"),
    ("[prompt_words]", "a red cat"),
    ("[prompt_hash]", hashlib.sha256(b"a red cat, on a (mat:1.2)").hexdigest()[:8]),
    ("[prompt_hash<4>]", hashlib.sha256(b"a red cat, on a (mat:1.2)").hexdigest()[:4]),
    ("[negative_prompt_hash]", hashlib.sha256(b"blurry").hexdigest()[:8]),
    ("[full_prompt_hash<12>]", hashlib.sha256(b"a red cat, on a (mat:1.2) blurry").hexdigest()[:12]),
    ("[image_hash<10>]", hashlib.sha256(PICTURE.tobytes()).hexdigest()[:10]),
    ("[hasprompt<cat|dog><bird|none>]", "catnone"),
    ("[SEED]-[Steps]", "1234-20"),  # tag names ignore case, as in A1111
    ("[none]", ""),
    ("[basename]", "img"),
    ("x[unknown]y[seed]", "x[unknown]y1234"),  # unknown tags are kept as written
    ("no tags at all", "no tags at all"),
])
def test_every_tag(pattern: str, expected: str) -> None:
    assert render(pattern, FIELDS) == expected


def test_prompt_no_styles_takes_the_style_text_out() -> None:
    fields = NameFields(prompt="photo of a red cat", style_prompts=("photo of {prompt}",))
    assert render("[prompt_no_styles]", fields) == "a red cat"


def test_tags_with_nothing_to_say_vanish_with_the_text_before_them() -> None:
    single = NameFields(seed=7, batch_size=1, n_iter=1, denoising_strength=None)
    assert render("[seed]-[batch_number]", single) == "7"
    assert render("[seed]-[generation_number]-end", single) == "7-end"
    assert render("[seed]_[denoising]", single) == "7"
    assert render("[seed]+[seed_last]", single) == "7"
    assert render("[seed]-[generation_number]", NameFields(seed=7, n_iter=2, iteration=1)) == "7-2"
    assert render("[steps]-[model_hash]", NameFields()) == "[steps]-[model_hash]"  # no value here: kept
    assert render("[vae_filename]", NameFields()) == "NoneType"  # A1111's word for the checkpoint's own VAE


def test_sanitize_part() -> None:
    assert sanitize_part('a/b\\c:d*e?f"g<h>i|j\tk\nl') == "a_b_c_d_e_f_g_h_i_j_k_l"
    assert sanitize_part("  lead and trail. . ") == "__lead_and_trail._._"  # spaces replaced first
    assert sanitize_part("  lead and trail. . ", replace_spaces=False) == "lead and trail"
    assert len(sanitize_part("x" * 500)) == 128


def test_prompt_words() -> None:
    assert prompt_words("  (masterpiece:1.2), best_quality,\nred-cat  ", 8) == "masterpiece 1 2 best quality red cat"
    assert prompt_words("a b c d", 2) == "a b"
    assert prompt_words(",,, !!", 8) == "empty"


def test_folder_parts_never_lead_out() -> None:
    assert folder_parts("2026-01-02/a cat") == ("2026-01-02", "a cat")
    assert folder_parts("../../etc/./x") == ("etc", "x")
    assert folder_parts("/abs\\win//y/") == ("abs", "win", "y")
    assert folder_parts("..") == ()
