"""ModelCache: budget, LRU order, in-use locks, device placement, single loads and freeing."""

from __future__ import annotations

import threading
import weakref

import pytest
import torch

from modules.models.cache import ModelCache


class FakeModel:
    """Records where it was moved; holds a tensor so freeing it means something."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.device = torch.device("cpu")
        self.moves: list[str] = []
        self.weights = torch.zeros(1000)

    def to(self, device: torch.device) -> "FakeModel":
        self.device = torch.device(device)
        self.moves.append(str(self.device))
        return self


class Loader:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.finalized: list[str] = []

    def __call__(self, name: str):
        def load() -> FakeModel:
            self.loaded.append(name)
            model = FakeModel(name)
            weakref.finalize(model, self.finalized.append, name)
            return model

        return load


def use_once(cache: ModelCache, key: str, loader: Loader) -> None:
    with cache.use(key, loader(key)) as model:
        assert model.name == key


def test_lru_eviction_within_the_budget() -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=2)
    loader = Loader()
    for key in ("a", "b", "a", "c", "a", "b"):
        use_once(cache, key, loader)
        assert len(cache) <= 2
    assert loader.loaded == ["a", "b", "c", "b"]  # c evicted b (LRU), then b evicted c
    assert loader.finalized == ["b", "c"] and cache.freed == 2
    assert cache.keys() == ["a", "b"]


def test_eviction_happens_before_the_next_load() -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=1)
    loader = Loader()
    use_once(cache, "a", loader)

    def load_b() -> FakeModel:
        assert "a" not in cache and loader.finalized == ["a"], "peak RAM must stay at the budget"
        return FakeModel("b")

    with cache.use("b", load_b):
        pass


def test_entries_in_use_are_never_evicted() -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=1)
    loader = Loader()
    with cache.use("base", loader("base")) as base:
        assert cache.in_use("base") and not cache.evict("base")
        assert cache.clear() == 0
        with cache.use("refiner", loader("refiner")):
            assert len(cache) == 2  # over budget only while both are in use
        assert cache.keys() == ["base"] and loader.finalized == ["refiner"]
        assert base.name == "base"
    del base
    assert cache.evict("base") and loader.finalized == ["refiner", "base"] and len(cache) == 0


def test_a_model_is_loaded_once_by_concurrent_users() -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=1)
    loader = Loader()
    gate = threading.Barrier(4)
    seen: list[int] = []

    def job() -> None:
        gate.wait()
        with cache.use("a", loader("a")) as model:
            seen.append(id(model))

    threads = [threading.Thread(target=job) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loader.loaded == ["a"] and len(set(seen)) == 1


def test_failed_load_leaves_nothing_behind() -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=1)

    def broken() -> FakeModel:
        raise OSError("disk error")

    with pytest.raises(OSError):
        with cache.use("a", broken):
            pass
    assert len(cache) == 0


def test_one_model_on_the_device_others_offloaded() -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=3, device="meta", offload_device="cpu")
    loader = Loader()
    models: dict[str, FakeModel] = {}
    for key in ("a", "b", "a"):
        with cache.use(key, loader(key)) as model:
            models[key] = model
            assert model.device.type == "meta"
            assert [m.name for m in models.values() if m.device.type == "meta"] == [key]
    assert models["a"].moves == ["meta", "cpu", "meta"] and models["b"].moves == ["meta", "cpu"]


def test_set_limit_shrinks_now() -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=3)
    loader = Loader()
    for key in ("a", "b", "c"):
        use_once(cache, key, loader)
    cache.set_limit(1)
    assert cache.keys() == ["c"] and sorted(loader.finalized) == ["a", "b"]
    assert cache.clear() == 1 and len(cache) == 0


@pytest.mark.slow
def test_eviction_warns_when_someone_else_keeps_the_model(caplog) -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=1)
    loader = Loader()
    with cache.use("a", loader("a")) as leaked:
        pass
    with caplog.at_level("WARNING"):
        use_once(cache, "b", loader)
    assert "still holds it" in caplog.text and loader.finalized == []
    del leaked
    assert loader.finalized == ["a"]


def test_all_on_device_when_asked() -> None:
    cache: ModelCache[FakeModel] = ModelCache(limit=2, device="meta", one_on_device=False)
    loader = Loader()
    models = []
    for key in ("a", "b"):
        with cache.use(key, loader(key)) as model:
            models.append(model)
    assert [m.device.type for m in models] == ["meta", "meta"]
