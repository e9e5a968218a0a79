"""Repository-wide code rules from docs/CONTRIBUTING.md, checked mechanically."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("modules", "extensions", "bench", "tools")
MAX_LINES = 800


def _python_files() -> list[Path]:
    files = [ROOT / "webui.py"] if (ROOT / "webui.py").exists() else []
    for name in SOURCE_DIRS:
        if (ROOT / name).is_dir():
            files.extend(p for p in (ROOT / name).rglob("*.py") if ".venv" not in p.parts)
    return files


def test_files_stay_small() -> None:
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _python_files()}
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"files over {MAX_LINES} lines: {too_long}"


@pytest.mark.slow
def test_no_print_in_library_code() -> None:
    offenders = []
    for path in _python_files():
        if path.parts[-2] in ("bench", "tools"):
            continue  # scripts report numbers on stdout by design
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"use logging instead of print: {offenders}"


@pytest.mark.slow
def test_no_hub_downloads() -> None:
    """Everything loads from local files: no from_pretrained without local_files_only, no hub helpers."""
    offenders = []
    for path in _python_files():
        text = path.read_text()
        for banned in ("hf_hub_download", "snapshot_download"):
            if banned in text:
                offenders.append(f"{path.relative_to(ROOT)}: {banned}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("from_pretrained", "from_single_file"):
                kw = {k.arg for k in node.keywords}
                if "local_files_only" not in kw and None not in kw:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    offenders.append(f"{where} {node.func.attr} without local_files_only")
    assert not offenders, offenders


def test_ruff_is_clean() -> None:
    """Style and complexity rules of ruff.toml (line length 120, C901) over the whole repository."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        import pytest

        pytest.skip("ruff is not installed (requirements-test.txt installs it)")
    result = subprocess.run([ruff, "check", "--quiet", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
