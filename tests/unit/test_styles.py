"""A1111 styles.csv: applying, extracting, loading and saving without ever losing the user's file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modules.errors import UserError
from modules.prompts.styles import (
    PromptStyle,
    StyleDatabase,
    StylesFileError,
    apply_styles_to_prompt,
    extract_style_text_from_prompt,
    merge_prompts,
)

A1111_FILE = (
    '\ufeffname,prompt,negative_prompt\n'
    'wrap,"masterpiece, {prompt}, best quality",lowres\n'
    'tail,"film grain, 35mm","blurry, {prompt}"\n'
    '"# comment row",ignored,ignored\n'
    'neg only,,"bad hands"\n'
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


# --- applying -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("style", "prompt", "expected"), [
    ("masterpiece, {prompt}", "a cat", "masterpiece, a cat"),
    ("{prompt} {prompt}", "x", "x x"),
    ("film grain", "a cat", "a cat, film grain"),
    ("  film grain ", "  a cat  ", "a cat, film grain"),
    ("film grain", "", "film grain"),
    ("", "  a cat ", "a cat"),
    ("{prompt}", "", ""),
])
def test_merge_prompts(style: str, prompt: str, expected: str) -> None:
    assert merge_prompts(style, prompt) == expected


def test_styles_apply_in_order() -> None:
    assert apply_styles_to_prompt("cat", ["a {prompt}", "{prompt} b", "c"]) == "a cat b, c"
    assert apply_styles_to_prompt("cat", ["c", "a {prompt}"]) == "a cat, c"
    assert apply_styles_to_prompt(" cat ", []) == " cat "


def test_database_applies_to_both_prompts(tmp_path: Path) -> None:
    db = StyleDatabase(write(tmp_path / "styles.csv", A1111_FILE))
    assert db.names() == ["wrap", "tail", "neg only"]
    assert db.apply("a cat", "ugly", ["wrap", "tail"]) == (
        "masterpiece, a cat, best quality, film grain, 35mm", "blurry, ugly, lowres")
    assert db.apply_styles_to_prompt("a cat", ["tail"]) == "a cat, film grain, 35mm"
    assert db.apply_negative_styles_to_prompt("", ["neg only"]) == "bad hands"
    # unknown names act as empty styles (A1111): the prompt is only stripped
    assert db.apply(" a cat ", " ugly ", ["nope"]) == ("a cat", "ugly")


# --- extracting ---------------------------------------------------------------------------------------------------

def test_extract_style_text() -> None:
    assert extract_style_text_from_prompt("masterpiece", "1girl, art by greg, masterpiece") == (
        True, "1girl, art by greg")
    assert extract_style_text_from_prompt("masterpiece, {prompt}", "masterpiece, 1girl, art by greg") == (
        True, "1girl, art by greg")
    assert extract_style_text_from_prompt("masterpiece, {prompt}", "exquisite, 1girl") == (False, "exquisite, 1girl")
    assert extract_style_text_from_prompt("{prompt} and {prompt}", "x and x") == (False, "x and x")


def test_extract_styles_round_trip(tmp_path: Path) -> None:
    db = StyleDatabase(write(tmp_path / "styles.csv", A1111_FILE))
    prompt, negative = db.apply("a cat", "ugly", ["wrap", "tail"])
    assert db.extract_styles_from_prompt(prompt, negative) == (["wrap", "tail"], "a cat", "ugly")


def test_extract_is_greedy_in_file_order_like_a1111(tmp_path: Path) -> None:
    # "tail" matches first (its negative '{prompt}' side accepts anything), so the order found differs from the
    # order applied; the inner prompts are still recovered.
    db = StyleDatabase(write(tmp_path / "styles.csv", A1111_FILE))
    prompt, negative = db.apply("a cat", "ugly", ["wrap", "tail", "neg only"])
    assert db.extract_styles_from_prompt(prompt, negative) == (["wrap", "neg only", "tail"], "a cat", "ugly")


def test_extract_needs_both_prompts_to_match(tmp_path: Path) -> None:
    db = StyleDatabase(write(tmp_path / "styles.csv", A1111_FILE))
    prompt, _ = db.apply("a cat", "ugly", ["tail"])
    assert db.extract_styles_from_prompt(prompt, "ugly") == ([], prompt, "ugly")


# --- loading ------------------------------------------------------------------------------------------------------

def test_missing_and_empty_files_mean_no_styles(tmp_path: Path) -> None:
    assert StyleDatabase(tmp_path / "none.csv").names() == []
    empty = StyleDatabase(write(tmp_path / "empty.csv", ""))
    assert empty.names() == [] and empty.load_warning is None


def test_old_format_and_extra_columns(tmp_path: Path) -> None:
    old = StyleDatabase(write(tmp_path / "old.csv", "name, text\nx, some text\n"))
    assert old.get("x") == PromptStyle("x", "some text", "")
    path = write(tmp_path / "styles.csv", "name,prompt,negative_prompt,description\ns,p,n,my notes\nt,q,,\n")
    db = StyleDatabase(path)
    assert db.get("s") == PromptStyle("s", "p", "n", (("description", "my notes"),))
    db.set_style(PromptStyle("u", "new"))
    db.save()
    assert path.read_text(encoding="utf-8-sig").splitlines() == [
        "name,prompt,negative_prompt,description", "s,p,n,my notes", "t,q,,", "u,new,,"]


def test_old_format_is_saved_in_the_current_format(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", "name,text\nx,some text\n")
    db = StyleDatabase(path)
    db.save()
    assert path.read_text(encoding="utf-8-sig").splitlines() == ["name,prompt,negative_prompt", "x,some text,"]


@pytest.mark.parametrize("content", [
    b"name,prompt\n\xff\xfe broken utf-8,\n",
    b"style,text\nno name column,x\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
])
def test_corrupt_file_is_set_aside_and_kept(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "styles.csv"
    path.write_bytes(content)
    db = StyleDatabase(path)
    assert db.names() == [] and db.load_warning and "copied to" in db.load_warning
    (copy,) = tmp_path.glob("styles.csv.corrupt-*")
    assert copy.read_bytes() == content
    db.set_style(PromptStyle("a", "b"))
    db.save()  # safe: the corrupt content lives on in the copy
    assert StyleDatabase(path).names() == ["a"]
    assert copy.read_bytes() == content


def test_a_second_corrupt_load_never_overwrites_the_first_copy(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_bytes(b"\xff\xff")
    StyleDatabase(path)
    StyleDatabase(path)
    assert len(list(tmp_path.glob("styles.csv.corrupt-*"))) == 2


def test_unreadable_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.mkdir()  # reading a directory fails with OSError, as an unreadable file would
    db = StyleDatabase(path)
    assert db.names() == [] and "cannot be read" in (db.load_warning or "")
    db.set_style(PromptStyle("a", "b"))
    with pytest.raises(StylesFileError, match="could not be read"):
        db.save()
    assert path.is_dir()


# --- saving -------------------------------------------------------------------------------------------------------

def test_save_round_trips_and_keeps_a_backup(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", A1111_FILE)
    db = StyleDatabase(path)
    db.set_style(PromptStyle("quotes", 'say "hi", {prompt}\nnext line', "neg"))
    assert db.delete_style("tail") and not db.delete_style("tail")
    db.save()
    assert (tmp_path / "styles.csv.bak").read_bytes().decode("utf-8") == A1111_FILE
    assert path.read_bytes().startswith(b"\xef\xbb\xbfname,prompt,negative_prompt")
    reloaded = StyleDatabase(path)
    assert reloaded.styles == db.styles
    assert reloaded.get("quotes") == PromptStyle("quotes", 'say "hi", {prompt}\nnext line', "neg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styles.csv", "styles.csv.bak"]  # no temp file left


def test_set_style_replaces_in_place_and_needs_a_name(tmp_path: Path) -> None:
    db = StyleDatabase(write(tmp_path / "styles.csv", A1111_FILE))
    db.set_style(PromptStyle("wrap", "new"))
    assert db.names() == ["wrap", "tail", "neg only"] and db.get("wrap") == PromptStyle("wrap", "new")
    with pytest.raises(UserError):
        db.set_style(PromptStyle("  "))


def test_failed_write_leaves_the_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "styles.csv", A1111_FILE)
    db = StyleDatabase(path)
    db.set_style(PromptStyle("new", "x"))

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("modules.fileio.os.replace", fail)
    with pytest.raises(StylesFileError, match="disk full"):
        db.save()
    assert path.read_bytes().decode("utf-8") == A1111_FILE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styles.csv", "styles.csv.bak"]


def test_reload_picks_up_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", A1111_FILE)
    db = StyleDatabase(path)
    write(path, "name,prompt,negative_prompt\nonly,p,n\n")
    db.reload()
    assert db.names() == ["only"]


def test_concurrent_edits_and_reads(tmp_path: Path) -> None:
    db = StyleDatabase(tmp_path / "styles.csv")

    def edit(start: int) -> None:
        for i in range(start, start + 200):
            db.set_style(PromptStyle(f"s{i}", f"p{i}"))
            db.apply("x", "y", [f"s{i}"])

    threads = [threading.Thread(target=edit, args=(n * 200,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(db.names()) == 800
