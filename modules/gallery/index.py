"""An SQLite index of the saved pictures: what the Gallery tab searches and pages through.

One row per image file (`<data_dir>/gallery.sqlite3`, table `images`): its path (relative to the data directory,
or absolute for an output folder outside it), modification time, size, width and height, and what its infotext
says: prompt, negative prompt, model, sampler, seed and the whole text. `date` is the local date of the file's
modification time (YYYY-MM-DD). Nothing is decoded: the header and the text chunks of a file are read with Pillow
(`Image.open` reads no pixels), so a page of the tab and a rebuild stay cheap.

- `record(path)` is called for every file the app saves (generation samples, grids, script pictures, Extras); it
  reads the file back, so a live index and a rebuilt one hold the same rows. It never raises.
- `rebuild()` walks the output folders (`outputs/` and the outdir_* settings) and brings the index in line with
  them: new and changed files are read, rows of vanished files go.
- `search(query)` filters by prompt text (a case-insensitive substring of the prompt, optionally of the negative
  prompt too; case folding is Python's `str.casefold`, stored beside the prompts), model, sampler, seed and date
  range, newest first (modification time, then id), with offset/limit paging and the total count.
- `delete(id)` moves the file, and its `.txt` sidecar if any, into `<data_dir>/trash/` (keeping its path under the
  data directory; a name already taken there gets a counter) and removes the row. Nothing is destroyed.

SQLite is used from job threads (saving) and UI threads (searching): one connection, every use under a lock.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from PIL import Image

from modules import infotext
from modules.images import read_infotext

if TYPE_CHECKING:
    from modules.paths import DataPaths
    from modules.settings import SettingsStore

log = logging.getLogger(__name__)

DB_NAME = "gallery.sqlite3"
TRASH_DIR = "trash"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
OUTDIR_OPTIONS = ("outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples",
                  "outdir_grids", "outdir_txt2img_grids", "outdir_img2img_grids")
SCHEMA_VERSION = 1
_BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    mtime REAL NOT NULL,
    size INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    prompt TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    sampler TEXT NOT NULL DEFAULT '',
    seed INTEGER,
    date TEXT NOT NULL,
    infotext TEXT NOT NULL DEFAULT '',
    prompt_fold TEXT NOT NULL DEFAULT '',
    negative_fold TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS images_newest ON images (mtime DESC, id DESC);
CREATE INDEX IF NOT EXISTS images_model ON images (model, mtime DESC);
CREATE INDEX IF NOT EXISTS images_sampler ON images (sampler, mtime DESC);
CREATE INDEX IF NOT EXISTS images_seed ON images (seed);
CREATE INDEX IF NOT EXISTS images_date ON images (date, mtime DESC);
"""
_COLUMNS = ("path", "mtime", "size", "width", "height", "prompt", "negative_prompt", "model", "sampler", "seed",
            "date", "infotext", "prompt_fold", "negative_fold")
_UPSERT = (f"INSERT INTO images ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
           f"ON CONFLICT(path) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS[1:])}")
_SELECT = "SELECT id, path, mtime, size, width, height, prompt, negative_prompt, model, sampler, seed, date, " \
          "infotext FROM images"


@dataclass(frozen=True)
class GalleryEntry:
    """One indexed picture. `path` is relative to the data directory (POSIX separators) or absolute."""

    id: int
    path: str
    mtime: float
    size: int
    width: int | None
    height: int | None
    prompt: str
    negative_prompt: str
    model: str
    sampler: str
    seed: int | None
    date: str
    infotext: str

    def file(self, data_dir: Path) -> Path:
        """The picture's file on disk."""
        return data_dir / self.path


@dataclass(frozen=True)
class GalleryQuery:
    """A search: every non-empty filter must hold (dates inclusive, YYYY-MM-DD)."""

    text: str = ""
    model: str = ""
    sampler: str = ""
    seed: int | None = None
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    in_negative: bool = False
    """Match `text` in the negative prompt as well."""
    offset: int = 0
    limit: int = 36


@dataclass(frozen=True)
class GalleryPage:
    """One page of a search: its entries, newest first, and how many match in all."""

    entries: tuple[GalleryEntry, ...]
    total: int
    offset: int
    limit: int

    @property
    def page(self) -> int:
        """1-based number of this page."""
        return self.offset // max(1, self.limit) + 1

    @property
    def pages(self) -> int:
        """How many pages the search has (at least 1)."""
        return max(1, -(-self.total // max(1, self.limit)))


@dataclass(frozen=True)
class FileFacts:
    """What `read_file` learns from one file without decoding its pixels."""

    mtime: float
    size: int
    width: int | None
    height: int | None
    infotext: str


def read_file(path: Path) -> FileFacts:
    """Stat the file and read its header and infotext; an unreadable image gives no size and no infotext.
    OSError only when the file itself cannot be stat'ed."""
    stat = path.stat()
    width = height = None
    text = ""
    try:
        with Image.open(path) as image:
            width, height = image.size
            text = read_infotext(image) or ""
    except Exception as error:  # noqa: BLE001 - any file may sit in an output folder, broken in any way
        log.debug("Gallery: %s is not a readable image (%s)", path, error)
    return FileFacts(stat.st_mtime, stat.st_size, width, height, text)


def row_values(stored_path: str, facts: FileFacts) -> tuple[Any, ...]:
    """The `_COLUMNS` values of a file."""
    parsed = infotext.parse(facts.infotext) if facts.infotext else None
    params = parsed.params if parsed is not None else {}
    prompt = parsed.prompt if parsed is not None else ""
    negative = parsed.negative_prompt if parsed is not None else ""
    seed_text = params.get("Seed", "").strip()
    seed = int(seed_text) if seed_text.lstrip("-").isdigit() else None
    if seed is not None and not -(2 ** 63) <= seed < 2 ** 63:
        seed = None
    date = datetime.datetime.fromtimestamp(facts.mtime).date().isoformat()
    return (stored_path, facts.mtime, facts.size, facts.width, facts.height, prompt, negative,
            params.get("Model", ""), params.get("Sampler", ""), seed, date, facts.infotext, prompt.casefold(),
            negative.casefold())


class GalleryIndex:
    """The index of one data directory's pictures (see the module docstring). The database opens on first use."""

    def __init__(self, data_dir: Path, roots: Callable[[], Sequence[Path]] | None = None,
                 db_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.db_path = db_path or self.data_dir / DB_NAME
        self._roots = roots or (lambda: [self.data_dir / "outputs"])
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self.created = False
        """True when the database file did not exist before this index opened it (a rebuild would fill it)."""

    @classmethod
    def for_paths(cls, paths: "DataPaths", settings: "SettingsStore | None" = None) -> "GalleryIndex":
        """The index of `paths`' data directory over `outputs/` and the folders the outdir_* settings name."""

        def roots() -> list[Path]:
            folders = [paths.outputs]
            if settings is not None:
                values = settings.get()
                for name in OUTDIR_OPTIONS:
                    text = str(values[name] or "").strip()
                    if text:
                        folder = Path(text).expanduser()
                        folders.append(folder if folder.is_absolute() else paths.data_dir / folder)
            return folders

        return cls(paths.data_dir, roots)

    # -- connection -----------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self.created = not self.db_path.exists()
            conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- paths ----------------------------------------------------------------------------------------------

    def stored_path(self, path: Path) -> str:
        """`path` as stored: relative to the data directory with '/' separators, else absolute."""
        absolute = Path(os.path.abspath(path))
        try:
            return absolute.relative_to(os.path.abspath(self.data_dir)).as_posix()
        except ValueError:
            return str(absolute)

    def root_folders(self) -> list[Path]:
        """The output folders (absolute; some may not exist yet)."""
        return list(dict.fromkeys(Path(os.path.abspath(root)) for root in self._roots()))

    def roots(self) -> list[Path]:
        """The existing output folders, without folders inside another one (the ones walked by `rebuild`)."""
        found: list[Path] = []
        for folder in sorted(self.root_folders(), key=lambda p: len(p.parts)):
            if folder.is_dir() and not any(folder.is_relative_to(other) for other in found):
                found.append(folder)
        return found

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / TRASH_DIR

    # -- writing --------------------------------------------------------------------------------------------

    def record(self, path: Path) -> None:
        """Index (or re-index) the picture just saved at `path`. Never raises: a failure is logged."""
        try:
            facts = read_file(Path(path))
            values = row_values(self.stored_path(Path(path)), facts)
            with self._lock:
                self._connection().execute(_UPSERT, values)
        except Exception as error:  # noqa: BLE001 - the gallery must never fail a save
            log.warning("Gallery: could not index %s: %s", path, error)

    def rebuild(self, full: bool = False) -> int:
        """Bring the index in line with the output folders; returns how many files it holds afterwards.

        Files whose size and modification time match their row are not read again unless `full`. Files are read
        outside the lock, so saving and searching go on meanwhile."""
        with self._lock:
            known = {row[0]: (row[1], row[2]) for row in
                     self._connection().execute("SELECT path, mtime, size FROM images")}
        seen: set[str] = set()
        pending: list[tuple[Any, ...]] = []
        for file in self._walk():
            stored = self.stored_path(file)
            seen.add(stored)
            try:
                stat = file.stat()
                if not full and known.get(stored) == (stat.st_mtime, stat.st_size):
                    continue
                pending.append(row_values(stored, read_file(file)))
            except OSError as error:
                log.debug("Gallery: skipped %s (%s)", file, error)
                continue
            if len(pending) >= _BATCH:
                self._write(pending, [])
                pending = []
        gone = [path for path in known if path not in seen and not (self.data_dir / path).exists()]
        self._write(pending, gone)
        return self.count()

    def _write(self, rows: list[tuple[Any, ...]], gone: list[str]) -> None:
        with self._lock:
            with self._transaction() as conn:
                conn.executemany(_UPSERT, rows)
                conn.executemany("DELETE FROM images WHERE path = ?", [(path,) for path in gone])

    def _walk(self) -> Iterator[Path]:
        trash = Path(os.path.abspath(self.trash_dir))
        for root in self.roots():
            for folder, dirs, files in os.walk(root):
                here = Path(folder)
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_relative_to(trash))
                for name in sorted(files):
                    if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                        yield here / name

    def delete(self, entry_id: int) -> Path | None:
        """Move the picture (and its .txt sidecar) into the trash and drop its row; returns where the picture went
        (None when the id is unknown; a file already gone just loses its row)."""
        entry = self.get(entry_id)
        if entry is None:
            return None
        source = entry.file(self.data_dir)
        relative = Path(entry.path)
        if relative.is_absolute():  # an output folder outside the data directory: keep the last folder's name
            relative = Path("external") / relative.parent.name / relative.name
        target = _free_name(self.trash_dir / relative)
        moved = None
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
            moved = target
            sidecar = source.with_suffix(".txt")
            if sidecar.is_file():
                shutil.move(sidecar, _free_name(target.with_suffix(".txt")))
        with self._lock:
            self._connection().execute("DELETE FROM images WHERE id = ?", (entry_id,))
        return moved

    # -- reading --------------------------------------------------------------------------------------------

    def get(self, entry_id: int) -> GalleryEntry | None:
        with self._lock:
            row = self._connection().execute(f"{_SELECT} WHERE id = ?", (entry_id,)).fetchone()
        return GalleryEntry(*row) if row else None

    def count(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def search(self, query: GalleryQuery) -> GalleryPage:
        """One page of the pictures matching `query`, newest first, and the number of matches."""
        where, args = _conditions(query)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        limit, offset = max(1, int(query.limit)), max(0, int(query.offset))
        with self._lock:
            conn = self._connection()
            total = int(conn.execute(f"SELECT COUNT(*) FROM images{clause}", args).fetchone()[0])
            rows = conn.execute(f"{_SELECT}{clause} ORDER BY mtime DESC, id DESC LIMIT ? OFFSET ?",
                                [*args, limit, offset]).fetchall()
        return GalleryPage(tuple(GalleryEntry(*row) for row in rows), total, offset, limit)

    def models(self) -> list[str]:
        """The models named by indexed pictures, sorted."""
        return self._distinct("model")

    def samplers(self) -> list[str]:
        """The samplers named by indexed pictures, sorted."""
        return self._distinct("sampler")

    def _distinct(self, column: str) -> list[str]:
        with self._lock:
            rows = self._connection().execute(
                f"SELECT DISTINCT {column} FROM images WHERE {column} != '' ORDER BY {column} COLLATE NOCASE")
            return [row[0] for row in rows]


def _conditions(query: GalleryQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    needle = query.text.strip().casefold()
    if needle:
        if query.in_negative:
            where.append("(instr(prompt_fold, ?) > 0 OR instr(negative_fold, ?) > 0)")
            args += [needle, needle]
        else:
            where.append("instr(prompt_fold, ?) > 0")
            args.append(needle)
    if query.model:
        where.append("model = ?")
        args.append(query.model)
    if query.sampler:
        where.append("sampler = ?")
        args.append(query.sampler)
    if query.seed is not None:
        where.append("seed = ?")
        args.append(int(query.seed))
    if query.date_from is not None:
        where.append("date >= ?")
        args.append(query.date_from.isoformat())
    if query.date_to is not None:
        where.append("date <= ?")
        args.append(query.date_to.isoformat())
    return where, args


def _free_name(target: Path) -> Path:
    """`target`, or `name-1.ext`, `name-2.ext`... when taken."""
    candidate, counter = target, 0
    while candidate.exists():
        counter += 1
        candidate = target.with_name(f"{target.stem}-{counter}{target.suffix}")
    return candidate
