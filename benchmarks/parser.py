"""Benchmark the world's scene parser and renderer; prints Markdown tables.

Measures, per image size (64x64, 128x128, 96x160, 160x96 by default):

- exact scene recovery (:func:`liquidgen.world.scene.scenes_match`: same objects, same
  shape/colour/size, centres within 2.5% of the short side) on ``--n`` clean renders;
- the same under each degradation of :mod:`liquidgen.world.degrade` on ``--n-degraded``
  renders (blur, noise, colour shift, ragged edges, stray blobs, and all at once), plus
  stress rows with all degradations at 1.5x and 2x their reference magnitudes;
- shape + colour accuracy on the easy-VQA test images whose attributes the metadata fixes;
- parse and render speed: scenes per CPU-second of one process (robust to other load on
  the machine) and wall-clock scenes per second with ``--workers`` processes.

Usage::

    python benchmarks/parser.py                     # the figures in docs/world.md
    python benchmarks/parser.py --n 200 --n-degraded 50 --workers 1   # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from liquidgen.world.degrade import DEGRADATIONS, degrade
from liquidgen.world.parse import load_image, parse
from liquidgen.world.render import render
from liquidgen.world.scene import parse_size, sample_scene, scenes_match

CLEAN = "clean"
STRESS = {"all x1.5": 1.5, "all x2": 2.0}  # stress rows: every degradation amplified


def _condition(name: str) -> tuple[str, float]:
    """Condition name -> (degradation kind, strength)."""
    return ("all", STRESS[name]) if name in STRESS else (name, 1.0)


def _recovery(task: tuple[str, tuple[int, int], int, int]) -> tuple[int, int, Counter[str], float]:
    """Parse ``n`` scenes under one condition; returns hits, n, error kinds, CPU s parsing."""
    condition, (width, height), n, seed = task
    rng = np.random.default_rng(seed)
    hits, errors, parse_time = 0, Counter[str](), 0.0
    for _ in range(n):
        scene = sample_scene(rng, width, height)
        image = render(scene)
        if condition != CLEAN:
            kind, strength = _condition(condition)
            image = degrade(image, kind, rng, scene, strength=strength)
        start = time.process_time()
        found = parse(image)
        parse_time += time.process_time() - start
        if scenes_match(scene, found):
            hits += 1
        elif len(found.objects) != len(scene.objects):
            errors[f"count {len(scene.objects)}->{len(found.objects)}"] += 1
        else:
            for obj in scene.objects:
                near = min(found.objects, key=lambda o: (o.cx - obj.cx) ** 2 + (o.cy - obj.cy) ** 2)
                for attr in ("shape", "color", "size"):
                    if getattr(near, attr) != getattr(obj, attr):
                        errors[f"{getattr(obj, attr)}->{getattr(near, attr)}"] += 1
    return hits, n, errors, parse_time


def _render_cpu_seconds(task: tuple[tuple[int, int], int, int]) -> float:
    """CPU seconds one process spends sampling and rendering ``n`` scenes."""
    size, n, seed = task
    rng = np.random.default_rng(seed)
    start = time.process_time()
    for _ in range(n):
        render(sample_scene(rng, *size))
    return time.process_time() - start


def _easy_vqa() -> tuple[int, int, int, int, int, int] | None:
    """(both right, both known, shape right, shape known, colour right, colour known)."""
    try:
        from liquidgen.corpora.easy_vqa import EASY_VQA_VOCABULARY, image_attributes, image_paths
    except ImportError:
        return None
    attrs, paths = image_attributes("test"), image_paths("test")
    both = both_n = shape = shape_n = color = color_n = 0
    for image_id, a in attrs.items():
        objects = parse(load_image(paths[image_id]), vocabulary=EASY_VQA_VOCABULARY).objects
        got = objects[0] if len(objects) == 1 else None
        if a.shape:
            shape_n += 1
            shape += got is not None and got.shape == a.shape
        if a.color:
            color_n += 1
            color += got is not None and got.color == a.color
        if a.shape and a.color:
            both_n += 1
            both += got is not None and (got.shape, got.color) == (a.shape, a.color)
    return both, both_n, shape, shape_n, color, color_n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64x64,128x128,96x160,160x96")
    parser.add_argument("--n", type=int, default=2000, help="clean renders per size")
    parser.add_argument(
        "--n-degraded", type=int, default=1000, help="renders per size and degradation"
    )
    parser.add_argument(
        "--n-speed", type=int, default=1000, help="scenes rendered per size for speed"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    conditions = [CLEAN, *DEGRADATIONS, *STRESS]
    tasks = []
    for c, condition in enumerate(conditions):
        n = args.n if condition == CLEAN else args.n_degraded
        for s, size in enumerate(sizes):
            # split each cell in chunks so that the workers share the load evenly
            chunks = max(1, args.workers)
            for k in range(chunks):
                share = n // chunks + (k < n % chunks)
                tasks.append(
                    (
                        condition,
                        size,
                        share,
                        int(np.random.SeedSequence([args.seed, c, s, k]).generate_state(1)[0]),
                    )
                )
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(_recovery, tasks))
    wall = time.perf_counter() - start

    cells: dict[tuple[str, tuple[int, int]], list[int | float | Counter[str]]] = {}
    for (condition, size, _, _), (hits, n, errors, seconds) in zip(tasks, results, strict=True):
        cell = cells.setdefault((condition, size), [0, 0, Counter(), 0.0])
        cell[0] += hits
        cell[1] += n
        cell[2].update(errors)  # type: ignore[union-attr]
        cell[3] += seconds

    names = [f"{w}x{h}" for w, h in sizes]
    print(f"Exact scene recovery (hits / renders), {args.workers} worker(s), {wall:.0f} s wall\n")
    print("| condition | " + " | ".join(names) + " | all |")
    print("|---" * (len(sizes) + 2) + "|")
    parse_seconds = parse_count = 0.0
    for condition in conditions:
        row, total_hits, total_n = [], 0, 0
        for size in sizes:
            hits, n, _, seconds = cells[(condition, size)]
            row.append(f"{hits / n:.2%} ({hits}/{n})")
            total_hits, total_n = total_hits + hits, total_n + n
            parse_seconds += seconds  # type: ignore[operator]
            parse_count += n  # type: ignore[operator]
        print(f"| {condition} | " + " | ".join(row) + f" | {total_hits / total_n:.2%} |")
    print("\nMost frequent errors per condition:")
    for condition in conditions:
        errors = Counter[str]()
        for size in sizes:
            errors.update(cells[(condition, size)][2])  # type: ignore[arg-type]
        listed = ", ".join(f"{k} x{v}" for k, v in errors.most_common(5)) or "none"
        print(f"- {condition}: {listed}")
    rate = parse_count / parse_seconds
    print(f"\nParse speed: {rate:.0f} images per CPU-second (all images above)")

    easy = _easy_vqa()
    if easy is None:
        print("\neasy-VQA: package not installed, skipped")
    else:
        both, both_n, shape, shape_n, color, color_n = easy
        print("\neasy-VQA test images (attributes fixed by their questions):\n")
        print("| measure | accuracy |\n|---|---|")
        print(f"| shape + colour | {both / both_n:.2%} ({both}/{both_n}) |")
        print(f"| shape | {shape / shape_n:.2%} ({shape}/{shape_n}) |")
        print(f"| colour | {color / color_n:.2%} ({color}/{color_n}) |")

    print(f"\nRender speed (sample_scene + render), {args.workers} worker(s):\n")
    print("| size | scenes per CPU-second | scenes/s wall, all workers |\n|---|---|---|")
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(_render_cpu_seconds, [(sizes[0], 10, 0)] * args.workers))  # warm up
        for size, name in zip(sizes, names, strict=True):
            share = max(1, args.n_speed // args.workers)
            jobs = [(size, share, args.seed + k) for k in range(args.workers)]
            start = time.perf_counter()
            cpu = sum(pool.map(_render_cpu_seconds, jobs))
            wall = time.perf_counter() - start
            total = share * args.workers
            print(f"| {name} | {total / cpu:.0f} | {total / wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
