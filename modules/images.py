"""Saving generated images with their infotext, and reading the infotext back (A1111 conventions).

- PNG: the infotext goes in a `parameters` text chunk (Pillow `PngInfo.add_text`, which writes tEXt for Latin-1
  text and iTXt, UTF-8, otherwise; A1111 does the same).
- JPEG / WebP: the infotext goes in the EXIF UserComment tag (0x9286) as `b"UNICODE\\0"` + UTF-16 big-endian text,
  which is what A1111 writes with `piexif.helper.UserComment.dump(..., encoding="unicode")` and reads back with
  `UserComment.load`. Pillow's own EXIF writer produces it (piexif is not needed).
- File names are `NNNNN-<decoration>.<ext>`: a 5-digit counter one above the highest numeric prefix in the directory
  (A1111 `get_next_sequence_number`), then the `basename_pattern` ("[seed]" by default) rendered by
  `modules.filenames` (A1111's `[tag]`s). With a `basename` ("grid") names are `grid-NNNN<decoration>.<ext>`;
  without the counter (`add_number=False`, A1111's `save_images_add_number` off) a name that is taken gets the
  counter after all instead of replacing the file.
- `text_file` is written to a `.txt` file of the same name beside the picture (A1111's `save_txt`).
- A file is never overwritten and never appears half written: the image is written completely to a hidden
  temporary file in the same directory, then hard-linked to its final name, which fails if the name exists (the
  counter is then bumped and the link retried). Where the file system has no hard links, the final name is
  reserved with an exclusive create and the temporary file is renamed over that reservation.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Mapping

from PIL import ExifTags, Image, PngImagePlugin, UnidentifiedImageError

from modules.errors import CorruptFile, InvalidRequest
from modules.fileio import write_text_atomic
from modules.filenames import NameFields, render

logger = logging.getLogger(__name__)

_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_MAX_SIDE = {"JPEG": 65535, "WEBP": 16383}  # larger images are saved as PNG, as A1111 does
_MAX_COUNTER_ATTEMPTS = 10_000
_UNICODE_PREFIX = b"UNICODE\x00"
_ASCII_PREFIX = b"ASCII\x00\x00\x00"
_UNSAFE_FILENAME_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
# Serialises "pick the counter, link the file" within this process so that concurrent saves (of different seeds,
# hence different names) still get distinct counters. It guards the file system, not data: other processes can
# at worst reuse a counter, never overwrite a file (the link refuses existing names).
_NAMING_LOCK = threading.Lock()


def save_image(
    image: Image.Image,
    directory: Path,
    *,
    seed: int,
    infotext: str | None,
    extension: str = "png",
    basename_pattern: str = "[seed]",
    jpeg_quality: int = 90,
    extra_text: Mapping[str, str] | None = None,
    fields: NameFields | None = None,
    add_number: bool = True,
    basename: str = "",
    lossless: bool = False,
    text_file: str | None = None,
) -> Path:
    """Save `image` under a new `NNNNN-<pattern>.<extension>` name in `directory` (created if missing).

    `basename_pattern`'s tags are filled from `fields` (only `[seed]`, from `seed`, when None); tags without a
    value are kept literally (as A1111 keeps them); characters that file systems refuse become '_'. `jpeg_quality`
    applies to JPEG and WebP, `lossless` to WebP. `extra_text` adds PNG text chunks (the Extras tab's `extras`).
    `add_number`, `basename` and `text_file`: see the module docstring. Returns the path written. Raises
    `InvalidRequest` for an unsupported extension.
    """
    image_format = _FORMATS.get(extension.lower().lstrip("."))
    if image_format is None:
        raise InvalidRequest(f"Cannot save images as {extension!r}: supported formats are png, jpg, jpeg and webp.")
    extension = extension.lower().lstrip(".")
    side_limit = _MAX_SIDE.get(image_format)
    if side_limit is not None and max(image.size) > side_limit:
        logger.warning("Image of %sx%s is too large for %s; saving as PNG", *image.size, image_format)
        image_format, extension = "PNG", "png"
    directory.mkdir(parents=True, exist_ok=True)
    decoration = _render_pattern(basename_pattern, fields if fields is not None else NameFields(seed=seed))
    temp_path = directory / f".{uuid.uuid4().hex}.tmp"
    try:
        with open(temp_path, "xb") as handle:
            _write_image(handle, image, image_format, infotext, jpeg_quality, extra_text, lossless)
            handle.flush()
            os.fsync(handle.fileno())
        path = _publish(temp_path, directory, _Naming(decoration, extension, basename,
                                                      add_number or not decoration))
    finally:
        temp_path.unlink(missing_ok=True)
    if text_file is not None:
        write_text_atomic(path.with_suffix(".txt"), text_file)
    return path


def next_counter(directory: Path, basename: str = "") -> int:
    """One above the highest numeric prefix (`00012-...` -> 12) among the files of `directory`; 0 when none. With a
    `basename`, the number after `<basename>-` (`grid-0007.png` -> 7) among the files named so."""
    highest = -1
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    start = f"{basename}-" if basename else ""
    for name in names:
        if not name.startswith(start):
            continue
        prefix = os.path.splitext(name[len(start):])[0].split("-")[0]
        if prefix.isascii() and prefix.isdigit():
            highest = max(highest, int(prefix))
    return highest + 1


def _render_pattern(pattern: str, fields: NameFields) -> str:
    return _UNSAFE_FILENAME_CHARS.sub("_", render(pattern, fields)).strip(" .")


@dataclass(frozen=True)
class _Naming:
    """How a picture's final name is made: `[<basename>-]<counter>[-<decoration>].<extension>`, or
    `<decoration>.<extension>` without the counter."""

    decoration: str
    extension: str
    basename: str
    add_number: bool

    def numbered(self, counter: int) -> str:
        number = f"{self.basename}-{counter:04}" if self.basename else f"{counter:05}"
        return f"{number}{'-' if self.decoration else ''}{self.decoration}.{self.extension}"


def _publish(temp_path: Path, directory: Path, naming: _Naming) -> Path:
    with _NAMING_LOCK:
        return _publish_locked(temp_path, directory, naming)


def _publish_locked(temp_path: Path, directory: Path, naming: _Naming) -> Path:
    if not naming.add_number:
        try:
            final = directory / f"{naming.decoration}.{naming.extension}"
            link_without_overwrite(temp_path, final)
            return final
        except FileExistsError:
            pass  # taken: numbered after all, never replaced
    counter = next_counter(directory, naming.basename)
    for _ in range(_MAX_COUNTER_ATTEMPTS):
        final = directory / naming.numbered(counter)
        try:
            link_without_overwrite(temp_path, final)
        except FileExistsError:
            counter = max(counter + 1, next_counter(directory, naming.basename))
            continue
        return final
    raise OSError(f"Could not find a free file name in {directory} after {_MAX_COUNTER_ATTEMPTS} attempts")


def link_without_overwrite(source: Path, target: Path) -> None:
    """Give `source`'s complete content the name `target`; FileExistsError if `target` exists."""
    try:
        os.link(source, target)
        return
    except FileExistsError:
        raise
    except OSError as error:  # no hard links here (FAT, some network shares): reserve, then rename over it
        logger.debug("Hard link to %s failed (%s); using an exclusive reservation", target, error)
    with open(target, "xb"):
        pass
    os.replace(source, target)


def _write_image(handle: BinaryIO, image: Image.Image, image_format: str, infotext: str | None, quality: int,
                 extra_text: Mapping[str, str] | None = None, lossless: bool = False) -> None:
    # Pillow keeps the options of a save on the Image object (`encoderinfo`), so two threads saving the same
    # object could swap metadata; each save works on its own copy.
    image = image.copy()
    if image_format == "PNG":
        pnginfo = None
        if infotext is not None or extra_text:
            pnginfo = PngImagePlugin.PngInfo()
            if infotext is not None:
                pnginfo.add_text("parameters", infotext)
            for key, value in (extra_text or {}).items():
                pnginfo.add_text(key, value)
        image.save(handle, format="PNG", pnginfo=pnginfo)
        return
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    options: dict[str, object] = {"quality": quality}
    if image_format == "WEBP" and lossless:
        options["lossless"] = True
    if infotext is not None:
        exif = Image.Exif()
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = _UNICODE_PREFIX + infotext.encode("utf_16_be")
        options["exif"] = exif
    image.save(handle, format=image_format, **options)


def read_infotext(image: Image.Image) -> str | None:
    """The infotext of an opened image: PNG `parameters` text, else EXIF UserComment, else a GIF comment.

    Never raises: an image without (readable) metadata gives None.
    """
    try:
        text = image.info.get("parameters")
        if isinstance(text, str) and text:
            return text
        if "exif" in image.info:
            comment = _exif_user_comment(image)
            if comment:
                return comment
        comment = image.info.get("comment")
        if isinstance(comment, bytes):
            comment = comment.decode("utf-8", errors="ignore")
        return comment or None
    except Exception as error:  # noqa: BLE001 - metadata of arbitrary files may be malformed in any way
        logger.debug("Could not read metadata: %s", error)
        return None


def read_infotext_file(path: Path) -> str | None:
    """The infotext of the image file at `path` (None if it has none); `CorruptFile` if it is not a readable image."""
    try:
        with Image.open(path) as image:
            return read_infotext(image)
    except FileNotFoundError as error:
        raise CorruptFile(f"Cannot read image {path}: the file does not exist.") from error
    except UnidentifiedImageError as error:
        raise CorruptFile(f"Cannot read {path}: it is not an image file in a format Pillow recognises.") from error
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptFile(f"Cannot read image {path}: {error}") from error


def _exif_user_comment(image: Image.Image) -> str | None:
    user_comment = image.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
    if isinstance(user_comment, str):
        return user_comment.rstrip("\x00") or None
    if not isinstance(user_comment, bytes):
        return None
    return decode_user_comment(user_comment) or None


def decode_user_comment(data: bytes) -> str:
    """Decode an EXIF UserComment value: 8-byte character-code prefix + text (EXIF 2.3, Table 9).

    "UNICODE" text is UTF-16; A1111/piexif write big-endian, some tools write little-endian, told apart by the
    zero bytes of ASCII characters. Other prefixes are decoded as UTF-8, as A1111 falls back to.
    """
    prefix, body = data[:8], data[8:]
    if prefix == _UNICODE_PREFIX:
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            return body.decode("utf_16", errors="replace").rstrip("\x00")
        even_zeros, odd_zeros = body[0::2].count(0), body[1::2].count(0)
        encoding = "utf_16_le" if odd_zeros > even_zeros else "utf_16_be"
        return body.decode(encoding, errors="replace").rstrip("\x00")
    if prefix == _ASCII_PREFIX or prefix == b"\x00" * 8:
        return body.decode("utf-8", errors="ignore").rstrip("\x00")
    return data.decode("utf-8", errors="ignore").rstrip("\x00")
