"""LoRA: finding files, multipliers, hashes, merging into tiny models and restoring them bit-exactly."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import torch

from modules.errors import InvalidRequest, ModelNotFound
from modules.models.components import ComponentSet
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from modules.networks.lora import (
    LoraDatabase,
    LoraFile,
    LoraUse,
    apply_loras,
    lora_delta,
    lora_hashes_infotext,
    lora_multipliers,
    resolve_lora_refs,
)
from modules.networks.lora_keys import LoraModule
from tests.networks.helpers import kohya_state, kohya_to_peft, write_lora

SD1_UNET = [
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",  # Linear
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0",
    "down_blocks.0.attentions.0.proj_in",  # Conv2d 1x1 in SD1
    "down_blocks.0.resnets.0.conv1",  # Conv2d 3x3 (LoCon)
    "mid_block.resnets.0.time_emb_proj",
]
SD1_TE = [(0, "encoder.layers.0.self_attn.q_proj"), (0, "encoder.layers.2.mlp.fc1")]


@pytest.fixture(scope="module")
def sd1() -> ComponentSet:
    return build_tiny_components(ModelIdentity(Family.SD1))


@pytest.fixture(scope="module")
def sdxl() -> ComponentSet:
    return build_tiny_components(ModelIdentity(Family.SDXL))


def snapshot(components: ComponentSet) -> dict[str, torch.Tensor]:
    state = {}
    modules = [("unet", components.unet), *((f"te{i}", te) for i, te in enumerate(components.text_encoders))]
    for prefix, module in modules:
        state.update({f"{prefix}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    return state


def changed(components: ComponentSet, before: dict[str, torch.Tensor]) -> set[str]:
    now = snapshot(components)
    return {key for key, value in now.items() if not torch.equal(value, before[key])}


def unet_output(components: ComponentSet) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn((1, 4, 8, 8), generator=generator)
    width = components.unet.config.cross_attention_dim
    context = torch.randn((1, 77, width), generator=generator)
    extra = {}
    if components.identity.is_sdxl:
        pooled = components.unet.config.projection_class_embeddings_input_dim - 6 * 8
        extra = {"added_cond_kwargs": {"text_embeds": torch.randn((1, pooled), generator=generator),
                                       "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}}
    with torch.no_grad():
        return components.unet(sample, 500, encoder_hidden_states=context, **extra).sample


def te_output(components: ComponentSet, index: int = 0) -> torch.Tensor:
    ids = torch.tensor([[49406, 320, 1125, 49407] + [49407] * 4])
    with torch.no_grad():
        return components.text_encoders[index](ids).last_hidden_state


@pytest.fixture
def sd1_lora(tmp_path: Path, sd1: ComponentSet) -> LoraFile:
    state = kohya_state(sd1, SD1_UNET, SD1_TE, rank=2, alpha=1.0)
    return LoraFile.from_path(write_lora(tmp_path / "kohya.safetensors", state))


def test_apply_changes_outputs_and_restores_bit_exactly(sd1: ComponentSet, sd1_lora: LoraFile) -> None:
    before, unet_before, te_before = snapshot(sd1), unet_output(sd1), te_output(sd1)
    with apply_loras(sd1, [(sd1_lora, 1.0, 1.0)]):
        assert not torch.equal(unet_output(sd1), unet_before)
        assert not torch.equal(te_output(sd1), te_before)
        assert changed(sd1, before) == {f"unet.{p}.weight" for p in SD1_UNET} | {f"te0.{p}.weight" for _, p in SD1_TE}
    assert changed(sd1, before) == set()
    assert torch.equal(unet_output(sd1), unet_before)


def test_merged_weight_is_up_down_times_alpha_over_rank(sd1: ComponentSet, tmp_path: Path) -> None:
    path = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    state = kohya_state(sd1, [path], [], rank=4, alpha=2.0)
    lora = LoraFile.from_path(write_lora(tmp_path / "a.safetensors", state))
    name = "lora_unet_" + path.replace(".", "_")
    expected_delta = state[f"{name}.lora_up.weight"] @ state[f"{name}.lora_down.weight"] * (2.0 / 4) * 0.7
    weight = dict(sd1.unet.named_modules())[path].weight
    original = weight.detach().clone()
    with apply_loras(sd1, [LoraUse(lora, te_weight=1.0, unet_weight=0.7)]):
        torch.testing.assert_close(weight.detach() - original, expected_delta, rtol=1e-5, atol=1e-6)
    assert torch.equal(weight.detach(), original)


def test_zero_weight_changes_nothing(sd1: ComponentSet, sd1_lora: LoraFile) -> None:
    before, unet_before = snapshot(sd1), unet_output(sd1)
    with apply_loras(sd1, [(sd1_lora, 0.0, 0.0)]):
        assert changed(sd1, before) == set()
        assert torch.equal(unet_output(sd1), unet_before)


def test_text_encoder_and_unet_multipliers_are_separate(sd1: ComponentSet, sd1_lora: LoraFile) -> None:
    before = snapshot(sd1)
    with apply_loras(sd1, [(sd1_lora, 1.0, 0.0)]):
        assert changed(sd1, before) == {f"te0.{p}.weight" for _, p in SD1_TE}
    with apply_loras(sd1, [(sd1_lora, 0.0, 1.0)]):
        assert changed(sd1, before) == {f"unet.{p}.weight" for p in SD1_UNET}
    assert changed(sd1, before) == set()


def test_two_loras_on_one_layer_restore_to_the_original(sd1: ComponentSet, sd1_lora: LoraFile) -> None:
    before = snapshot(sd1)
    with apply_loras(sd1, [(sd1_lora, 1.0, 1.0), (sd1_lora, -0.3, 0.5)]):
        assert changed(sd1, before)
    assert changed(sd1, before) == set()


def test_restored_even_when_the_block_raises(sd1: ComponentSet, sd1_lora: LoraFile) -> None:
    before = snapshot(sd1)
    with pytest.raises(RuntimeError, match="interrupted"):
        with apply_loras(sd1, [(sd1_lora, 1.0, 1.0)]):
            raise RuntimeError("interrupted")
    assert changed(sd1, before) == set()


def test_lora_for_another_model_is_skipped_and_reported(sd1: ComponentSet, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    state = {"lora_unet_no_such_layer.lora_down.weight": torch.zeros(2, 4),
             "lora_unet_no_such_layer.lora_up.weight": torch.zeros(4, 2)}
    foreign = LoraFile.from_path(write_lora(tmp_path / "foreign.safetensors", state))
    good = LoraFile.from_path(write_lora(tmp_path / "good.safetensors", kohya_state(sd1, SD1_UNET[:1], [])))
    before = snapshot(sd1)
    uses = [LoraUse(foreign, mentioned_name="alien"), LoraUse(good, mentioned_name="good")]
    with caplog.at_level(logging.WARNING), apply_loras(sd1, uses) as applied:
        assert changed(sd1, before) == {f"unet.{SD1_UNET[0]}.weight"}  # the other LoRA still applies
        assert applied.errors == {"alien": 1} and [use.mentioned_name for use in applied.uses] == ["good"]
        assert applied.comments() == ("Networks with errors: alien (1)",)
    assert changed(sd1, before) == set()
    assert "foreign.safetensors skipped: none of its 1 layers exist" in caplog.text


def test_layers_of_another_shape_are_counted_as_errors(sd1: ComponentSet, tmp_path: Path) -> None:
    state = kohya_state(sd1, SD1_UNET[:2], [])
    state[f"lora_unet_{SD1_UNET[0].replace('.', '_')}.lora_down.weight"] = torch.zeros(2, 3)  # another in-width
    lora = LoraFile.from_path(write_lora(tmp_path / "bent.safetensors", state))
    before = snapshot(sd1)
    with apply_loras(sd1, [(lora, 1.0, 1.0)]) as applied:
        assert changed(sd1, before) == {f"unet.{SD1_UNET[1]}.weight"} and applied.errors == {"bent": 1}
        assert [use.lora for use in applied.uses] == [lora]
    with apply_loras(sd1, [(lora, 0.0, 0.0)]) as applied:  # an unused layer is no error
        assert applied.errors == {} and applied.comments() == ()


def test_partial_match_applies_the_rest_and_logs(sd1: ComponentSet, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    state = kohya_state(sd1, SD1_UNET[:1], [])
    state["lora_unet_missing_block.lora_down.weight"] = torch.zeros(2, 4)
    state["lora_unet_missing_block.lora_up.weight"] = torch.zeros(4, 2)
    lora = LoraFile.from_path(write_lora(tmp_path / "partial.safetensors", state))
    before = snapshot(sd1)
    with caplog.at_level(logging.WARNING), apply_loras(sd1, [(lora, 1.0, 1.0)]):
        assert changed(sd1, before) == {f"unet.{SD1_UNET[0]}.weight"}
    assert "lora_unet_missing_block" in caplog.text


def test_locon_deltas_match_composed_convolutions() -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn((1, 5, 9, 9), generator=generator)
    down3, up1 = torch.randn((2, 5, 3, 3), generator=generator), torch.randn((6, 2, 1, 1), generator=generator)
    delta = lora_delta(LoraModule("conv", down=down3, up=up1), torch.Size((6, 5, 3, 3)), torch.device("cpu"))
    torch.testing.assert_close(torch.conv2d(x, delta, padding=1), torch.conv2d(torch.conv2d(x, down3, padding=1), up1))
    down1, mid = torch.randn((2, 5, 1, 1), generator=generator), torch.randn((2, 2, 3, 3), generator=generator)
    delta = lora_delta(LoraModule("cp", down=down1, up=up1, mid=mid), torch.Size((6, 5, 3, 3)), torch.device("cpu"))
    composed = torch.conv2d(torch.conv2d(torch.conv2d(x, down1), mid, padding=1), up1)
    torch.testing.assert_close(torch.conv2d(x, delta, padding=1), composed, rtol=1e-4, atol=1e-4)


def test_peft_format_merges_like_the_kohya_file(sd1: ComponentSet, tmp_path: Path) -> None:
    kohya = kohya_state(sd1, SD1_UNET, SD1_TE, rank=2, alpha=1.0)
    peft = kohya_to_peft(sd1, kohya, SD1_UNET, SD1_TE)
    metadata = {"lora_adapter_metadata": {"unet.r": 2, "unet.lora_alpha": 1.0,
                                          "text_encoder.r": 2, "text_encoder.lora_alpha": 1.0}}
    kohya_file = LoraFile.from_path(write_lora(tmp_path / "k.safetensors", kohya))
    peft_file = LoraFile.from_path(write_lora(tmp_path / "p.safetensors", peft, metadata))
    with apply_loras(sd1, [(kohya_file, 0.8, 0.6)]):
        expected = snapshot(sd1)
    with apply_loras(sd1, [(peft_file, 0.8, 0.6)]):
        got = snapshot(sd1)
    assert all(torch.equal(got[key], expected[key]) for key in expected)


@pytest.mark.slow
def test_sdxl_kohya_names_reach_unet_and_both_text_encoders(sdxl: ComponentSet, tmp_path: Path) -> None:
    unet_paths = ["down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k", "up_blocks.1.resnets.0.conv1",
                  "down_blocks.0.downsamplers.0.conv", "add_embedding.linear_1"]
    te_paths = [(0, "encoder.layers.1.self_attn.v_proj"), (1, "text_model.encoder.layers.0.mlp.fc2")]
    state = kohya_state(sdxl, unet_paths, te_paths)
    # kohya SDXL files use the original LDM names (tiny layout: one layer per block).
    for name in ("input_blocks_3_1_transformer_blocks_1_attn2_to_k", "output_blocks_2_0_in_layers_2",
                 "input_blocks_2_0_op", "label_emb_0_0"):
        assert f"lora_unet_{name}.alpha" in state
    lora = LoraFile.from_path(write_lora(tmp_path / "xl.safetensors", state))
    before, unet_before = snapshot(sdxl), unet_output(sdxl)
    with apply_loras(sdxl, [(lora, 1.0, 1.0)]):
        expected = {f"unet.{p}.weight" for p in unet_paths} | {f"te{i}.{p}.weight" for i, p in te_paths}
        assert changed(sdxl, before) == expected
        assert not torch.equal(unet_output(sdxl), unet_before)
    assert changed(sdxl, before) == set()


def test_sd1_lora_on_sdxl_is_skipped(sdxl: ComponentSet, sd1: ComponentSet, tmp_path: Path) -> None:
    state = kohya_state(sd1, ["down_blocks.0.attentions.0.proj_in"], SD1_TE)
    lora = LoraFile.from_path(write_lora(tmp_path / "sd1_only.safetensors", state))
    before = snapshot(sdxl)
    with apply_loras(sdxl, [(lora, 1.0, 1.0)]) as applied:
        assert changed(sdxl, before) == set() and applied.uses == []
        assert applied.comments() == ("Networks with errors: sd1_only (3)",)  # its 3 layers


def test_unreadable_lora_file_is_skipped(sd1: ComponentSet, tmp_path: Path) -> None:
    path = write_lora(tmp_path / "broken.safetensors", kohya_state(sd1, SD1_UNET[:1], []))
    lora = LoraFile.from_path(path)
    path.write_bytes(path.read_bytes()[:40])
    with apply_loras(sd1, [(lora, 1.0, 1.0)]) as applied:
        assert applied.errors == {"broken": 1}


def test_database_finds_by_stem_and_alias_and_lists(tmp_path: Path, sd1: ComponentSet) -> None:
    state = kohya_state(sd1, SD1_UNET[:1], [])
    write_lora(tmp_path / "Lora" / "style" / "film_v2.safetensors", state, {"ss_output_name": "film grain"})
    write_lora(tmp_path / "Lora" / "a.safetensors", state, {"ss_output_name": "same"})
    write_lora(tmp_path / "Lora" / "b.safetensors", state, {"ss_output_name": "same"})
    torch.save(state, tmp_path / "Lora" / "old.pt")
    db = LoraDatabase(tmp_path / "Lora")
    db.refresh()
    assert sorted(db.files) == ["a", "b", "film_v2", "old"]
    assert db.find("film_v2") is db.find("film grain") is db.files["film_v2"]
    assert db.find("same") is None and db.find("a") is db.files["a"]
    with pytest.raises(ModelNotFound, match="nope"):
        db.require("nope")
    entry = next(item for item in db.listing() if item["name"] == "film_v2")
    assert entry["alias"] == "film grain" and entry["metadata"]["ss_output_name"] == "film grain"
    assert entry["path"].endswith("film_v2.safetensors")
    with apply_loras(sd1, [(db.files["old"], 1.0, 1.0)]):
        pass


def test_hashes_follow_a1111(tmp_path: Path, sd1: ComponentSet) -> None:
    path = write_lora(tmp_path / "h.safetensors", kohya_state(sd1, SD1_UNET[:1], []))
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    lora = LoraFile.from_path(path)
    assert lora.sha256 == hashlib.sha256(data[8 + header:]).hexdigest()
    uses = resolve_lora_refs(_db_with(tmp_path), [("h", ["0.5"])])
    assert lora_hashes_infotext(uses) == f"h: {lora.sha256[:12]}"
    assert (uses[0].te_weight, uses[0].unet_weight) == (0.5, 0.5)


def _db_with(folder: Path) -> LoraDatabase:
    db = LoraDatabase(folder)
    db.refresh()
    return db


@pytest.mark.parametrize(
    ("args", "expected"),
    [((), (1.0, 1.0)), (("0.5",), (0.5, 0.5)), (("0.5", "0.2"), (0.5, 0.2)), (("te=0.3",), (0.3, 0.3)),
     (("1", "unet=0"), (1.0, 0.0)), (("0.4", "0.6", "8"), (0.4, 0.6))],
)
def test_multipliers(args: tuple[str, ...], expected: tuple[float, float]) -> None:
    assert lora_multipliers("x", args) == expected


def test_bad_multiplier_is_a_user_error() -> None:
    with pytest.raises(InvalidRequest, match="abc"):
        lora_multipliers("x", ("abc",))
