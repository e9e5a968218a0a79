"""ModelManager: resolving names and VAEs per job, the checkpoint budget, freeing memory, and real tiny loads."""

from __future__ import annotations

import functools
import gc
import logging
import threading
import weakref
from pathlib import Path
from typing import Any, Mapping

import psutil
import pytest
import torch
from diffusers import AutoencoderKL

from modules.devices import DevicePlan
from modules.errors import ModelNotFound
from modules.models import tiny
from modules.models.components import ComponentSet
from modules.models.hashes import HashCache
from modules.models.identity import Family, ModelIdentity
from modules.models.manager import ModelManager, ModelOptions
from modules.models.records import CheckpointRecord, VaeRecord
from modules.models.tiny import ALL_TINY_IDENTITIES, build_tiny_components
from modules.paths import DataPaths

CPU_PLAN = DevicePlan(torch.device("cpu"), torch.float32, torch.float32)
SD1 = ModelIdentity(Family.SD1)
RSS_MARGIN = 40 * 2**20


class TinyLoader:
    """load_fn that builds a tiny SD1 model per checkpoint and watches it being freed."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.freed: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, record: CheckpointRecord, plan: DevicePlan) -> ComponentSet:
        with self._lock:
            self.loaded.append(record.name)
        components = tiny.build_tiny_components(SD1, seed=sum(record.name.encode()))
        weakref.finalize(components.unet, self.freed.append, record.name)
        return components


def tiny_vae_loader(record: VaeRecord, base_config: Mapping[str, Any], plan: DevicePlan) -> AutoencoderKL:
    torch.manual_seed(7)
    return AutoencoderKL(**{k: v for k, v in base_config.items() if not k.startswith("_")}).eval()


@pytest.fixture
def data_dir(tmp_path: Path) -> DataPaths:
    paths = DataPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    paths.vae.mkdir(parents=True)
    for name in ("a", "b", "c"):
        (paths.checkpoints / f"{name}.safetensors").write_bytes(name.encode() * 64)
    (paths.checkpoints / "c.vae.pt").write_bytes(b"vae")
    (paths.vae / "fancy.safetensors").write_bytes(b"vae")
    return paths


def make_manager(paths: DataPaths, loader: TinyLoader, **options: Any) -> ModelManager:
    return ModelManager(paths, ModelOptions(**options), load_fn=loader, vae_load_fn=tiny_vae_loader,
                        hash_cache=HashCache(paths.hash_cache_file), device_plan=CPU_PLAN)


def rss_after_gc() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.slow
def test_switching_checkpoints_stays_within_budget_and_frees_memory(data_dir: DataPaths, monkeypatch) -> None:
    """A1111 #5691 as a test: 20 switches between 3 checkpoints with a budget of 1 leave RSS flat.

    A leak of one tiny model per switch would add ~200 MiB per round; allocator noise is a few MiB. A round
    is repeated (at most 3 times) only when its growth is over the margin, so noise cannot fail the test.
    """
    monkeypatch.setattr(tiny, "load_tokenizer", functools.cache(tiny.load_tokenizer))  # shared, like real loaders
    loader = TinyLoader()
    manager = make_manager(data_dir, loader, sd_checkpoints_limit=1)

    def switch(rounds: int) -> None:
        for i in range(rounds):
            with manager.get("abc"[i % 3] + ".safetensors", vae="None") as components:
                assert components.unet is not None
            del components
            assert len(manager.checkpoints) <= 1

    switch(6)  # warm-up: allocator pools, lazy imports
    baseline = rss_after_gc()
    growth: list[int] = []
    while len(growth) < 3 and (not growth or growth[-1] >= RSS_MARGIN):
        switch(20)
        growth.append(rss_after_gc() - baseline)
    loads = 6 + 20 * len(growth)
    assert len(loader.loaded) == loads
    assert len(loader.freed) == loads - 1, "every evicted model must be freed"
    assert manager.checkpoints.freed == loads - 1
    assert growth[-1] < RSS_MARGIN, f"RSS grew by {[g // 2**20 for g in growth]} MiB per 20 switches"


@pytest.mark.slow
def test_budget_of_two_keeps_two(data_dir: DataPaths) -> None:
    loader = TinyLoader()
    manager = make_manager(data_dir, loader, sd_checkpoints_limit=2)
    for name in ("a", "b", "a", "b", "c"):
        with manager.get(name, vae="None"):
            pass
    assert loader.loaded == ["a.safetensors", "b.safetensors", "c.safetensors"]
    assert [key.name for key in manager.checkpoints.keys()] == ["b.safetensors", "c.safetensors"]
    manager.update_options({"sd_checkpoints_limit": 1, "unrelated": True})
    assert len(manager.checkpoints) == 1 and loader.freed == ["a.safetensors", "b.safetensors"]
    manager.unload()
    assert len(manager.checkpoints) == 0 and len(loader.freed) == 3


def test_current_checkpoint_is_a_setting_resolved_per_job(data_dir: DataPaths, caplog) -> None:
    manager = make_manager(data_dir, TinyLoader(), sd_model_checkpoint="b.safetensors")
    assert manager.resolve_checkpoint().name == "b.safetensors"
    assert manager.resolve_checkpoint(options=ModelOptions(sd_model_checkpoint="c")).name == "c.safetensors"
    assert manager.resolve_checkpoint("a").name == "a.safetensors"
    with pytest.raises(ModelNotFound, match="a.safetensors"):
        manager.resolve_checkpoint("sd_xl_base_1.0")
    with caplog.at_level(logging.WARNING):
        fallback = manager.resolve_checkpoint(options=ModelOptions(sd_model_checkpoint="gone.safetensors"))
    assert fallback.name == "a.safetensors" and "gone.safetensors" in caplog.text


def test_ckpt_flag_is_the_default_checkpoint(data_dir: DataPaths, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "z.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(b"z")
    manager = ModelManager(data_dir, load_fn=TinyLoader(), device_plan=CPU_PLAN, hash_cache=HashCache(None),
                           ckpt=outside)
    assert manager.resolve_checkpoint().path == outside.resolve()
    inside = ModelManager(data_dir, load_fn=TinyLoader(), device_plan=CPU_PLAN, hash_cache=HashCache(None),
                          ckpt=data_dir.checkpoints / "b.safetensors")
    assert inside.resolve_checkpoint().name == "b.safetensors"
    assert [r.name for r in inside.list_checkpoints()] == ["a.safetensors", "b.safetensors", "c.safetensors"]


def test_no_checkpoints_explains_where_to_put_them(tmp_path: Path) -> None:
    manager = make_manager(DataPaths(tmp_path), TinyLoader())
    with pytest.raises(ModelNotFound, match="Stable-diffusion"):
        with manager.get():
            pass


def test_sha256_is_computed_on_load_and_shows_in_the_title(data_dir: DataPaths) -> None:
    manager = make_manager(data_dir, TinyLoader())
    record = manager.resolve_checkpoint("a")
    assert record.title == "a.safetensors"
    with manager.get(record, vae="None"):
        pass
    assert record.title == f"a.safetensors [{record.sha256[:10]}]"
    assert manager.resolve_checkpoint(record.sha256[:10]) is record
    lazy = ModelManager(data_dir, load_fn=TinyLoader(), device_plan=CPU_PLAN, no_hashing=True,
                        hash_cache=HashCache(None))
    with lazy.get("b", vae="None"):
        pass
    assert lazy.resolve_checkpoint("b").sha256 is None


def test_vae_setting_semantics(data_dir: DataPaths) -> None:
    manager = make_manager(data_dir, TinyLoader(), sd_checkpoints_limit=1)
    c = manager.resolve_checkpoint("c")
    assert manager.resolve_vae(c, "None") is None
    assert manager.resolve_vae(c, "Automatic").name == "c.vae.pt"
    assert manager.resolve_vae(manager.resolve_checkpoint("a"), "Automatic") is None
    assert manager.resolve_vae(c, "fancy.safetensors").name == "fancy.safetensors"
    assert manager.resolve_vae(c, options=ModelOptions(sd_vae="fancy")).name == "fancy.safetensors"
    with pytest.raises(ModelNotFound, match="fancy.safetensors"):
        manager.resolve_vae(c, "nope.pt")


def test_vae_override_is_swapped_into_a_copy(data_dir: DataPaths) -> None:
    manager = make_manager(data_dir, TinyLoader())
    with manager.get("a", vae="None") as own:
        own_vae, own_unet = own.vae, own.unet
    with manager.get("a", vae="fancy.safetensors") as swapped:
        assert swapped.vae is not own_vae and swapped.unet is own_unet
        assert isinstance(swapped.vae, AutoencoderKL)
        override = swapped.vae
    with manager.get("a", vae="fancy.safetensors") as again:
        assert again.vae is override  # loaded once, cached
    with manager.get("a", vae="None") as plain:
        assert plain.vae is own_vae  # the cached checkpoint keeps its own VAE


def test_forced_vae_path_wins(data_dir: DataPaths) -> None:
    forced = data_dir.vae / "fancy.safetensors"
    manager = ModelManager(data_dir, load_fn=TinyLoader(), vae_load_fn=tiny_vae_loader, device_plan=CPU_PLAN,
                           hash_cache=HashCache(None), vae_path=forced)
    assert manager.resolve_vae(manager.resolve_checkpoint("a"), "None").path == forced


def test_concurrent_jobs_load_a_checkpoint_once(data_dir: DataPaths) -> None:
    loader = TinyLoader()
    manager = make_manager(data_dir, loader)
    gate = threading.Barrier(3)

    def job() -> None:
        gate.wait()
        with manager.get("b", vae="None"):
            pass

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loader.loaded == ["b.safetensors"]


def test_refresh_drops_models_whose_file_changed(data_dir: DataPaths) -> None:
    loader = TinyLoader()
    manager = make_manager(data_dir, loader, sd_checkpoints_limit=3)
    for name in ("a", "b"):
        with manager.get(name, vae="None"):
            pass
    (data_dir.checkpoints / "a.safetensors").write_bytes(b"a new training run")
    (data_dir.checkpoints / "d.safetensors").write_bytes(b"d")
    manager.refresh()
    assert [key.name for key in manager.checkpoints.keys()] == ["b.safetensors"]
    assert loader.freed == ["a.safetensors"]
    assert "d.safetensors" in [record.name for record in manager.list_checkpoints()]
    assert [vae.name for vae in manager.list_vaes()] == ["c.vae.pt", "fancy.safetensors"]


@pytest.mark.slow
def test_real_tiny_checkpoints_of_every_family(tmp_path: Path, tiny_checkpoints: dict) -> None:
    """save_single_file -> scan -> probe -> load through modules.models.loaders, for every family."""
    pytest.importorskip("modules.models.loaders")
    paths = DataPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    for identity, source in tiny_checkpoints.items():
        (paths.checkpoints / source.name).symlink_to(source)
    manager = ModelManager(paths, device_plan=CPU_PLAN, hash_cache=HashCache(paths.hash_cache_file))
    assert len(manager.list_checkpoints()) == len(ALL_TINY_IDENTITIES)
    for seed, identity in enumerate(ALL_TINY_IDENTITIES):
        record = manager.resolve_checkpoint(tiny_checkpoints[identity].name)
        assert record.identity == identity
        expected = build_tiny_components(identity, seed=seed)
        with manager.get(record, vae="None") as components:
            assert components.identity == identity
            got = components.unet.state_dict()
            assert all(torch.equal(got[key], value) for key, value in expected.unet.state_dict().items())
            assert len(components.text_encoders) == len(expected.text_encoders)
        assert len(manager.checkpoints) == 1
