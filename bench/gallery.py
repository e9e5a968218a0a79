"""Gallery index: a page query over 100,000 indexed pictures (newest first, with and without a prompt search).

    .venv/bin/python bench/gallery.py [--rows 100000] [--page-size 36] [--rounds 5]

Fills a fresh index in a temporary folder with fake rows (prompts drawn from a small vocabulary, 4 models, 6
samplers, dates over a year) straight through SQL, then times `GalleryIndex.search` for the first page, a deep
page, a prompt search, a rare-word search and a model + sampler + date filter (median of the rounds, count
included). Target: a page in well under a second. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modules import infotext  # noqa: E402
from modules.gallery.index import _UPSERT, FileFacts, GalleryIndex, GalleryQuery, row_values  # noqa: E402

WORDS = ("portrait", "landscape", "castle", "forest", "cat", "dog", "robot", "city", "night", "sunset", "ocean",
         "mountain", "flower", "dragon", "knight", "river", "snow", "desert", "neon", "painting", "photo",
         "detailed", "cinematic", "golden hour", "watercolor", "oil", "sketch", "bokeh", "8k", "masterpiece")
MODELS = ("sd15", "sdxl_base", "dreamshaper", "realistic_vision")
SAMPLERS = ("Euler", "Euler a", "DPM++ 2M", "DPM++ SDE", "DDIM", "UniPC")


def fake_rows(count: int, rng: random.Random) -> list[tuple]:
    start = datetime.datetime(2026, 1, 1).timestamp()
    rows = []
    for number in range(count):
        prompt = ", ".join(rng.sample(WORDS, 8)) + (", zyzzyva" if number % 10_000 == 0 else "")
        text = infotext.build(prompt, "blurry, lowres", {
            "Steps": 20, "Sampler": rng.choice(SAMPLERS), "CFG scale": 7, "Seed": rng.randrange(2 ** 32),
            "Size": "512x512", "Model": rng.choice(MODELS)})
        mtime = start + number * 315.0  # about a year for 100,000 pictures
        rows.append(row_values(f"outputs/txt2img-images/{number // 500:05}/{number:05}-x.png",
                               FileFacts(mtime, 400_000, 512, 512, text)))
    return rows


def timed(index: GalleryIndex, query: GalleryQuery, rounds: int) -> tuple[float, int, int]:
    times, total, shown = [], 0, 0
    for _ in range(rounds):
        started = time.perf_counter()
        page = index.search(query)
        times.append(time.perf_counter() - started)
        total, shown = page.total, len(page.entries)
    return statistics.median(times), total, shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=36)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        index = GalleryIndex(Path(folder))
        started = time.perf_counter()
        rows = fake_rows(args.rows, random.Random(0))
        made = time.perf_counter() - started
        started = time.perf_counter()
        with index._lock, index._transaction() as conn:
            conn.executemany(_UPSERT, rows)
        inserted = time.perf_counter() - started
        print(f"{args.rows} rows: made in {made:.2f} s, inserted in {inserted:.2f} s "
              f"({(Path(folder) / 'gallery.sqlite3').stat().st_size / 2 ** 20:.0f} MiB)")
        size = args.page_size
        queries = {
            "first page, newest first": GalleryQuery(limit=size),
            "page 1000": GalleryQuery(limit=size, offset=size * 999 if size * 999 < args.rows else 0),
            "prompt 'castle' (common)": GalleryQuery(text="castle", limit=size),
            "prompt 'ZYZZYVA' (rare)": GalleryQuery(text="ZYZZYVA", limit=size),
            "prompt in negative too": GalleryQuery(text="lowres", in_negative=True, limit=size),
            "model + sampler + dates": GalleryQuery(model="sdxl_base", sampler="Euler", limit=size,
                                                    date_from=datetime.date(2026, 3, 1),
                                                    date_to=datetime.date(2026, 6, 30)),
            "seed": GalleryQuery(seed=12345, limit=size),
        }
        print(f"{'query':32} {'median ms':>10} {'matches':>8} {'shown':>6}")
        for name, query in queries.items():
            seconds, total, shown = timed(index, query, args.rounds)
            print(f"{name:32} {seconds * 1000:10.1f} {total:8} {shown:6}")
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
