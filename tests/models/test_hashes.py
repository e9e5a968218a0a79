"""A1111 hashes and the cache.json they are kept in."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from modules.models import hashes
from modules.models.hashes import HashCache, calculate_sha256, legacy_model_hash, shorthash


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(bytes(range(256)) * 9000)  # 2.3 MB: covers A1111's legacy window at 1 MiB
    return path


def test_sha256_in_chunks_matches_hashlib(model_file: Path) -> None:
    expected = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert calculate_sha256(model_file, chunk_size=1000) == expected
    assert shorthash(expected) == expected[:10]
    assert shorthash(None) is None


def test_legacy_hash_is_a1111_model_hash(model_file: Path) -> None:
    data = model_file.read_bytes()
    assert legacy_model_hash(model_file) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert legacy_model_hash(model_file.with_name("missing.ckpt")) == "NOFILE"


def test_cache_writes_a1111_layout_and_reuses_it(model_file: Path, tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    value = HashCache(cache_file).sha256("checkpoint/model.safetensors", model_file)
    data = json.loads(cache_file.read_text())
    entry = data["hashes"]["checkpoint/model.safetensors"]
    assert entry["sha256"] == value and entry["mtime"] == os.stat(model_file).st_mtime
    assert entry["size"] == model_file.stat().st_size
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert HashCache(cache_file).cached("checkpoint/model.safetensors", model_file) == value


def test_reads_a1111_cache_and_keeps_other_sections(model_file: Path, tmp_path: Path, monkeypatch) -> None:
    cache_file = tmp_path / "cache.json"
    a1111 = {
        "hashes": {"checkpoint/model.safetensors": {"mtime": os.stat(model_file).st_mtime, "sha256": "ab" * 32}},
        "safetensors-metadata": {"checkpoint/model.safetensors": {"mtime": 1.0, "value": {}}},
    }
    cache_file.write_text(json.dumps(a1111))
    monkeypatch.setattr(hashes, "calculate_sha256", lambda *a, **k: pytest.fail("must use the cached value"))
    cache = HashCache(cache_file)
    assert cache.sha256("checkpoint/model.safetensors", model_file) == "ab" * 32
    monkeypatch.undo()
    other = model_file.with_name("other.ckpt")
    other.write_bytes(b"x")
    cache.sha256("checkpoint/other.ckpt", other)
    assert json.loads(cache_file.read_text())["safetensors-metadata"] == a1111["safetensors-metadata"]


def test_changed_file_is_rehashed(model_file: Path, tmp_path: Path) -> None:
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256("checkpoint/model.safetensors", model_file)
    stat = model_file.stat()
    model_file.write_bytes(b"different content")
    os.utime(model_file, (stat.st_atime, stat.st_mtime))  # same mtime, new size: still detected
    assert cache.cached("checkpoint/model.safetensors", model_file) is None
    second = cache.sha256("checkpoint/model.safetensors", model_file)
    assert second != first and second == hashlib.sha256(b"different content").hexdigest()
    os.utime(model_file, (stat.st_atime, stat.st_mtime + 10))  # touched: stale as in A1111
    assert cache.cached("checkpoint/model.safetensors", model_file) is None


def test_corrupt_cache_is_backed_up_and_rebuilt(model_file: Path, tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    cache_file.write_text("{ not json")
    cache = HashCache(cache_file)
    (backup,) = tmp_path.glob("cache.json.corrupt-*")
    assert backup.read_text() == "{ not json"
    value = cache.sha256("checkpoint/model.safetensors", model_file)
    assert json.loads(cache_file.read_text())["hashes"]["checkpoint/model.safetensors"]["sha256"] == value


def test_threads_hash_a_file_once(model_file: Path, tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    real = hashes.calculate_sha256
    gate = threading.Barrier(6)

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(hashes, "calculate_sha256", counting)
    cache = HashCache(tmp_path / "cache.json")
    results: list[str] = []

    def work() -> None:
        gate.wait()
        results.append(cache.sha256("checkpoint/model.safetensors", model_file))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 6


def test_memory_only_cache_and_missing_file(model_file: Path) -> None:
    cache = HashCache(None)
    assert cache.cached("checkpoint/x", model_file) is None
    assert cache.sha256("checkpoint/x", model_file) == calculate_sha256(model_file)
    assert cache.cached("checkpoint/x", model_file.with_name("gone.safetensors")) is None
    cache.forget("checkpoint/x")
    assert cache.cached("checkpoint/x", model_file) is None
