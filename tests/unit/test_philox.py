"""The NV noise source: Philox 4x32-10 known answers, CUDA's normal numbers, the per-draw counter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.core.latents import NoiseSpec, image_noise, noise_generator_device, noise_source_label
from modules.core.philox import PhiloxGenerator, philox4x32_10

RANDOM123_KAT = [  # Salmon et al.'s Random123 distribution, kat_vectors, "philox4x32 10"
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize(("counter", "key", "expected"), RANDOM123_KAT)
def test_philox4x32_10_known_answers(counter, key, expected) -> None:
    words = philox4x32_10(np.array(counter, dtype=np.uint32).reshape(4, 1),
                          np.array(key, dtype=np.uint32).reshape(2, 1))
    assert tuple(int(w) for w in words[:, 0]) == expected


def test_known_answers_hold_column_by_column() -> None:
    counters = np.array([c for c, _, _ in RANDOM123_KAT], dtype=np.uint32).T
    keys = np.array([k for _, k, _ in RANDOM123_KAT], dtype=np.uint32).T
    assert philox4x32_10(counters, keys).T.tolist() == [list(e) for _, _, e in RANDOM123_KAT]


def test_first_numbers_are_cudas_for_seed_0() -> None:
    """`torch.manual_seed(0); torch.randn(4, device="cuda")` is [-0.9247, -0.4253, -2.6438, 0.1452] on NVIDIA GPUs
    (PyTorch's widely printed example); the NV source gives those numbers on any machine."""
    torch.testing.assert_close(PhiloxGenerator(0).randn((4,)), torch.tensor([-0.9247, -0.4253, -2.6438, 0.1452]),
                               atol=1e-4, rtol=0)


def test_each_draw_advances_the_counter_and_shapes_reshape_one_stream() -> None:
    generator = PhiloxGenerator(1234)
    first, second = generator.randn((2, 3)), generator.randn((2, 3))
    assert not torch.equal(first, second) and generator.offset == 2
    assert torch.equal(PhiloxGenerator(1234).randn((6,)).reshape(2, 3), first)
    assert first.dtype == torch.float32


def test_large_draws_look_standard_normal() -> None:
    values = PhiloxGenerator(42).randn((4, 128, 128)).double()
    assert abs(values.mean().item()) < 0.01 and abs(values.std().item() - 1) < 0.01


def test_seeds_beyond_32_bits_use_the_high_key_word() -> None:
    assert not torch.equal(PhiloxGenerator(5).randn((8,)), PhiloxGenerator(5 + 2**32).randn((8,)))


def test_nv_source_draws_each_image_from_its_philox_stream() -> None:
    device = noise_generator_device("NV", torch.device("cpu"))
    assert noise_source_label(device) == "NV"
    noise, generator = image_noise(77, 0, NoiseSpec(shape=(4, 8, 8), generator_device=device))
    assert torch.equal(noise, PhiloxGenerator(77).randn((4, 8, 8)))
    assert isinstance(generator, PhiloxGenerator) and generator.offset == 1
    _, delta_generator = image_noise(77, 0, NoiseSpec(shape=(4, 8, 8), generator_device=device,
                                                      eta_noise_seed_delta=31337))
    assert isinstance(delta_generator, PhiloxGenerator) and delta_generator.seed == 77 + 31337
