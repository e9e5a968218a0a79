"""The one state-dict reader: safetensors and pickles, memory-mapped, and one error per way a file is bad."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.errors import CorruptFile, UnsafeCheckpoint, UnsupportedModel, UserError
from modules.models.state_dict import Header, read_header, read_metadata, read_pickle, read_state_dict

WEIGHTS = {"model.diffusion_model.a": torch.arange(6.0).reshape(2, 3), "first_stage_model.b": torch.ones(4)}


def _mapped_files() -> str:
    return Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""


def _same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    assert all(torch.equal(got[key], want[key]) for key in want)


def test_safetensors_tensors_metadata_and_header(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(WEIGHTS, str(path), metadata={"modelspec.resolution": "64x64"})
    _same(read_state_dict(path), WEIGHTS)
    _same(read_state_dict(path, prefix="first_stage_model."), {"first_stage_model.b": WEIGHTS["first_stage_model.b"]})
    assert read_metadata(path) == {"modelspec.resolution": "64x64"}
    assert read_header(path) == Header({"model.diffusion_model.a": (2, 3), "first_stage_model.b": (4,)},
                                       {"modelspec.resolution": "64x64"})


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickles_unwrap_state_dict_and_keep_tensors_only(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    torch.save({"state_dict": {**WEIGHTS, "step": 3}, "global_step": 5}, path)
    _same(read_state_dict(path), WEIGHTS)
    assert read_metadata(path) == {}
    assert read_header(path).shapes == {"model.diffusion_model.a": (2, 3), "first_stage_model.b": (4,)}
    assert read_pickle(path)["global_step"] == 5


def test_zip_pickles_are_memory_mapped(tmp_path: Path) -> None:
    if not _mapped_files():
        pytest.skip("no /proc/self/maps on this system")
    path = tmp_path / "mapped_model.ckpt"
    torch.save(WEIGHTS, path)
    state = read_state_dict(path)
    assert str(path) in _mapped_files()
    _same(state, WEIGHTS)


def test_legacy_non_zip_pickle_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "old.ckpt"
    torch.save(WEIGHTS, path, _use_new_zipfile_serialization=False)
    _same(read_state_dict(path), WEIGHTS)


class _Payload:
    marker: Path

    def __reduce__(self):  # what a malicious checkpoint does: run code while unpickling
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path: Path, zip_format: bool) -> None:
    payload = _Payload()
    payload.marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    if zip_format:
        torch.save({"state_dict": WEIGHTS, "payload": payload}, path)
    else:
        path.write_bytes(pickle.dumps({"payload": payload}))
    for read in (read_state_dict, read_header, read_pickle):
        with pytest.raises(UnsafeCheckpoint, match=r"evil\.ckpt: refused to load this pickle .* not executed"):
            read(path)
    assert not payload.marker.exists()


def test_allowed_extra_classes_are_per_call(tmp_path: Path) -> None:
    path = tmp_path / "emb.pt"
    torch.save({"string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.ones(1, 4))})}, path)
    with pytest.raises(UnsafeCheckpoint, match="ParameterDict"):
        read_pickle(path)
    assert torch.equal(read_pickle(path, allow=[torch.nn.ParameterDict])["string_to_param"]["*"], torch.ones(1, 4))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("name", ["cut.safetensors", "cut.ckpt", "cut_legacy.pt"])
def test_truncated_files_are_corrupt(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".safetensors"):
        save_file(WEIGHTS, str(path))
    else:
        torch.save(WEIGHTS, path, _use_new_zipfile_serialization="legacy" not in name)
    _truncate(path)
    for read in (read_state_dict, read_header):
        with pytest.raises(CorruptFile, match=name.replace(".", r"\.")):
            read(path)


@pytest.mark.parametrize("name, content", [("junk.safetensors", b"not a safetensors file"),
                                           ("junk.ckpt", b"PK\x03\x04 a damaged zip"), ("empty.pt", b"")])
def test_garbage_and_empty_files_are_corrupt(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for read in (read_state_dict, read_metadata, read_header):
        if read is read_metadata and not name.endswith(".safetensors"):
            continue  # a pickle has no metadata to read
        with pytest.raises(CorruptFile, match=name.replace(".", r"\.")):
            read(path)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(CorruptFile, match=r"gone\.safetensors: no such file"):
        read_state_dict(tmp_path / "gone.safetensors")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"")
    with pytest.raises(UnsupportedModel, match=r"model\.onnx: unknown file type"):
        read_state_dict(other)


def test_a_pickle_that_is_not_a_dictionary(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(UnsupportedModel, match=r"list\.pt: the pickle holds a list"):
        read_state_dict(path)


def test_every_error_is_a_user_error() -> None:
    assert all(issubclass(cls, UserError) for cls in (CorruptFile, UnsafeCheckpoint, UnsupportedModel))
