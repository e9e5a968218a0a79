"""Finding the driver's checkpoint on a worker's node by name and sha256 (`modules.models.by_hash`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from modules.errors import ModelNotFound
from modules.models.by_hash import ModelNotOnWorker, ModelRef, find_checkpoint, require_checkpoint
from modules.models.hashes import HashCache, calculate_sha256
from modules.models.records import ModelCatalog, ScanRoots


def catalog_of(folder: Path, files: dict[str, bytes]) -> ModelCatalog:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return ModelCatalog(ScanRoots((folder,), (), None), HashCache(None))


def ref_to(folder: Path, name: str) -> ModelRef:
    record = catalog_of(folder, {}).match(name)
    assert record is not None
    return ModelRef.of(record)


def test_the_ref_carries_the_title_name_and_sha256(tmp_path: Path) -> None:
    catalog_of(tmp_path / "head", {"sub/a.safetensors": b"model a"})
    ref = ref_to(tmp_path / "head", "sub/a.safetensors")
    sha256 = calculate_sha256(tmp_path / "head" / "sub" / "a.safetensors")
    assert ref == ModelRef(f"sub/a.safetensors [{sha256[:10]}]", "sub/a.safetensors", sha256)


def test_the_same_name_and_contents_is_taken_else_the_same_contents_under_any_name(tmp_path: Path) -> None:
    catalog_of(tmp_path / "head", {"a.safetensors": b"model a", "b.safetensors": b"model b"})
    a, b = ref_to(tmp_path / "head", "a.safetensors"), ref_to(tmp_path / "head", "b.safetensors")
    node = catalog_of(tmp_path / "node", {"a.safetensors": b"model a", "x/renamed.safetensors": b"model b",
                                          "b.safetensors": b"another model named b"})
    found_a, found_b = find_checkpoint(node, a), find_checkpoint(node, b)
    assert found_a is not None and found_a.path == tmp_path / "node" / "a.safetensors"
    assert found_b is not None and found_b.path == tmp_path / "node" / "x" / "renamed.safetensors"


def test_a_node_without_the_contents_has_no_such_checkpoint(tmp_path: Path) -> None:
    catalog_of(tmp_path / "head", {"a.safetensors": b"model a"})
    ref = ref_to(tmp_path / "head", "a.safetensors")
    node = catalog_of(tmp_path / "node", {"a.safetensors": b"other contents"})
    assert find_checkpoint(node, ref) is None
    with pytest.raises(ModelNotOnWorker) as caught:
        require_checkpoint(node, ref, "worker-1")
    assert str(caught.value) == (f"The checkpoint {ref.title} (sha256 {ref.sha256}) is not on worker-1: no file "
                                 f"with that name and contents under {tmp_path / 'node'}.")
    assert isinstance(caught.value, ModelNotFound)
    copy = pickle.loads(pickle.dumps(caught.value))  # it travels back from the worker
    assert isinstance(copy, ModelNotOnWorker) and copy.ref == ref and str(copy) == str(caught.value)


def test_a_file_copied_to_the_node_after_its_scan_is_found(tmp_path: Path) -> None:
    catalog_of(tmp_path / "head", {"a.safetensors": b"model a"})
    ref = ref_to(tmp_path / "head", "a.safetensors")
    node = catalog_of(tmp_path / "node", {})
    (tmp_path / "node" / "copied.safetensors").write_bytes(b"model a")
    assert require_checkpoint(node, ref, "worker-0").name == "copied.safetensors"


def test_without_a_sha256_the_name_decides(tmp_path: Path) -> None:
    node = catalog_of(tmp_path / "node", {"a.safetensors": b"anything"})
    found = find_checkpoint(node, ModelRef("a.safetensors", "a.safetensors", None))
    assert found is not None and found.name == "a.safetensors"
    assert find_checkpoint(node, ModelRef("b", "b.safetensors", None)) is None
