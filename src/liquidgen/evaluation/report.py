"""Evaluation outputs: the results JSON, a markdown table and a PNG sample grid.

Every file is written to a temporary sibling and renamed (:func:`liquidgen.utils.io.atomic_path`),
so an interrupted run never leaves a half-written result. Nothing here depends on time or
machine, so two runs with the same settings write byte-identical ``results.json`` and
``results.md``; wall-clock times go to ``timings.json`` instead.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from liquidgen.errors import ConfigError
from liquidgen.evaluation.t2i import T2ISample
from liquidgen.utils.io import atomic_path

RESULTS_FILE = "results.json"
MARKDOWN_FILE = "results.md"
GRID_FILE = "samples.png"
RECORDS_FILE = "records.jsonl"
TIMINGS_FILE = "timings.json"
FLOAT_DIGITS = 6  # JSON floats are rounded so reruns print the same text

TAG_NAMES = {
    "single_object": "single object",
    "two_object": "two objects",
    "counting": "counting",
    "colors": "colours",
    "position": "position",
    "color_attr": "colour attribution",
}
SPLIT_NAMES = {"seen": "seen", "heldout": "held-out"}
VQA_NAMES = {
    "world": "world renders",
    "world_heldout": "world renders, held-out compositions",
    "easy_vqa": "easy-VQA test",
}
MISSING = "—"

# Sample grid geometry (pixels).
CELL_TARGET = 160  # the largest image side is upscaled (nearest, integer factor) towards this
FRAME = 3  # verdict frame: green when the scorer accepts the image, red when it does not
PAD = 8
FONT_SIZE = 12
LINE_GAP = 2
PROMPT_LINES = 3  # wrapped prompt lines kept under each image
HEADER_LINES = 2  # wrapped lines of each column title
CORRECT_COLOR = (30, 150, 60)
WRONG_COLOR = (200, 40, 40)
TEXT_COLOR = (20, 20, 20)
NOTE_COLOR = (110, 110, 110)
BACKGROUND = (255, 255, 255)


# --------------------------------------------------------------------------- files
def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS) if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def to_json(data: Any) -> str:
    """Stable JSON text: floats rounded to :data:`FLOAT_DIGITS` digits, two-space indents."""
    return json.dumps(_rounded(data), indent=2, ensure_ascii=False) + "\n"


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_records(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> Path:
    """One JSON object a line (every scored image, answer and render)."""
    lines = [json.dumps(_rounded(r), ensure_ascii=False) + "\n" for r in records]
    return write_text(path, "".join(lines))


# --------------------------------------------------------------------------- markdown
def _acc(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _headline(results: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    t2i = results.get("t2i")
    if t2i:
        for split in ("seen", "heldout"):
            if split in t2i:
                part = t2i[split]
                rows.append(
                    [
                        f"text to image, {SPLIT_NAMES[split]} compositions",
                        f"GenEval-style overall, mean of {len(part['per_tag'])} categories "
                        f"({sum(part['counts'].values())} images)",
                        _acc(part["overall"]),
                    ]
                )
                if "sensitivity" in part:
                    chance = t2i.get("chance", {}).get(split)
                    rows.append(
                        [
                            f"text to image, {SPLIT_NAMES[split]} compositions",
                            "prompt sensitivity: own minus shuffled prompt"
                            + (
                                f" (random-scene chance {chance:.3f})" if chance is not None else ""
                            ),
                            f"{part['sensitivity']:.3f}",
                        ]
                    )
    for source, part in results.get("vqa", {}).get("sources", {}).items():
        rows.append(
            [
                f"VQA, {VQA_NAMES[source]}",
                f"accuracy ({part['questions']} questions)",
                _acc(part["overall"]),
            ]
        )
    text = results.get("text")
    if text:
        rows.append(
            [
                "text, held-out real text",
                f"perplexity ({text['documents']} documents, {text['tokens']} tokens)",
                f"{text['perplexity']:.2f}",
            ]
        )
        if "bits_per_byte" in text:
            rows.append(
                [
                    "text, held-out real text",
                    f"bits per byte ({text['bytes']} bytes)",
                    f"{text['bits_per_byte']:.3f}",
                ]
            )
    tok = results.get("tokenizer")
    if tok:
        rows.append(
            [
                "image tokenizer",
                f"scene round trip ({tok['images']} renders)",
                _acc(tok["roundtrip"]),
            ]
        )
        rows.append(["image tokenizer", "PSNR (dB)", f"{tok['psnr']:.2f}"])
        loc = tok.get("locality")
        if loc:
            rows += [
                [
                    "image tokenizer",
                    "far-code change, one object removed",
                    f"{loc['far_change']:.3f}",
                ],
                ["image tokenizer", "re-encode stability", f"{loc['reencode']:.3f}"],
                ["image tokenizer", "codes per flat background (max)", str(loc["flat_codes_max"])],
            ]
    return rows


def _t2i_tables(t2i: dict[str, Any]) -> list[str]:
    splits = [s for s in ("seen", "heldout") if s in t2i]
    header = ["category", *(SPLIT_NAMES[s] for s in splits)]
    tags = list(dict.fromkeys(t for s in splits for t in t2i[s]["per_tag"]))
    rows = [
        [TAG_NAMES.get(tag, tag), *(_acc(t2i[s]["per_tag"].get(tag)) for s in splits)]
        for tag in tags
    ]
    rows.append(["**overall**", *(f"**{_acc(t2i[s]['overall'])}**" for s in splits)])
    n = t2i["images_per_prompt"]
    lines = [
        f"### Text to image: accuracy per category ({n} image{'s' if n != 1 else ''} per "
        f"prompt, sizes {', '.join(t2i['sizes'])})",
        "",
        *_table(header, rows),
    ]
    if len(t2i["sizes"]) > 1:
        size_rows = [
            [size, *(_acc(t2i[s]["per_size"][size]["overall"]) for s in splits)]
            for size in t2i["sizes"]
        ]
        lines += [
            "### Text to image: overall per size",
            "",
            *_table(["size", *header[1:]], size_rows),
        ]
    return lines


def _vqa_table(vqa: dict[str, Any]) -> list[str]:
    sources = vqa["sources"]
    header = ["question type", *(VQA_NAMES[s] for s in sources)]
    types = list(dict.fromkeys(t for part in sources.values() for t in part["per_type"]))
    rows = [[t, *(_acc(part["per_type"].get(t)) for part in sources.values())] for t in types]
    rows.append(["**overall**", *(f"**{_acc(part['overall'])}**" for part in sources.values())])
    return ["### VQA: exact-match accuracy per question type", "", *_table(header, rows)]


def _tokenizer_table(tok: dict[str, Any]) -> list[str]:
    header = ["size", "renders", "PSNR (dB)", "worst PSNR (dB)", "round trip", "parser on renders"]
    parts = [*tok["per_size"].items(), ("**all**", tok)]
    rows = [
        [
            size,
            str(p["images"]),
            f"{p['psnr']:.2f}",
            f"{p['psnr_min']:.2f}",
            _acc(p["roundtrip"]),
            _acc(p["parser"]),
        ]
        for size, p in parts
    ]
    usage = (
        f"Codebook usage {tok['codes_used']} / {tok['codebook_size']} codes "
        f"({100 * tok['usage']:.1f}%), code perplexity {tok['perplexity']:.1f}."
    )
    loc = tok.get("locality")
    if loc:
        usage += (
            f" Locality: {100 * loc['far_change']:.1f}% of the {loc['far_codes']} codes >= 32 px "
            f"from a removed object change; {100 * loc['reencode']:.1f}% of codes survive "
            f"encode(decode(codes)); flat backgrounds use "
            + ", ".join(f"{n} {k}" for k, n in loc["flat_codes"].items())
            + " codes."
        )
    return [
        "### Image tokenizer: round trip of world renders",
        "",
        *_table(header, rows),
        usage,
        "",
    ]


def markdown_report(results: dict[str, Any]) -> str:
    """The evaluation as markdown: a headline table, then one table per task."""
    lines = [f"Command: `{results['command']}`", ""]
    lines += _table(["benchmark", "metric", "score"], _headline(results))
    if results.get("t2i"):
        lines += _t2i_tables(results["t2i"])
    if results.get("vqa"):
        lines += _vqa_table(results["vqa"])
    if results.get("tokenizer"):
        lines += _tokenizer_table(results["tokenizer"])
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- sample grid
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; the last kept line ends with an ellipsis if cut."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1] + " …"
    return lines


def sample_grid(samples: Sequence[T2ISample]) -> Image.Image:
    """Tile sample images with their prompts: one row per size, one column per split and
    category (named in a header row; sizes label the rows).

    Images are upscaled by one integer factor (nearest neighbour, so pixels stay visible)
    and framed green when the scorer accepts them, red when it does not; each prompt is
    written under its image.
    """
    if not samples:
        raise ConfigError("no samples to draw")
    sizes = list(dict.fromkeys(s.record.size for s in samples))
    columns = list(dict.fromkeys((s.record.split, s.record.tag) for s in samples))
    max_w = max(s.image.width for s in samples)
    max_h = max(s.image.height for s in samples)
    scale = max(1, CELL_TARGET // max(max_w, max_h))
    box_w, box_h = max_w * scale + 2 * FRAME, max_h * scale + 2 * FRAME
    font = _font(FONT_SIZE)
    line_h = FONT_SIZE + LINE_GAP
    cell_w, cell_h = box_w + 2 * PAD, box_h + PROMPT_LINES * line_h + 2 * PAD
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = int(max(probe.textlength(size, font=font) for size in sizes)) + 2 * PAD
    header_h = HEADER_LINES * line_h + 2 * PAD
    canvas = Image.new(
        "RGB", (label_w + cell_w * len(columns), header_h + cell_h * len(sizes)), BACKGROUND
    )
    draw = ImageDraw.Draw(canvas)
    for c, (split, tag) in enumerate(columns):
        title = f"{TAG_NAMES.get(tag, tag)} ({SPLIT_NAMES[split]})"
        for k, line in enumerate(_wrap(draw, title, font, box_w, HEADER_LINES)):
            draw.text(
                (label_w + c * cell_w + PAD, PAD + k * line_h), line, fill=NOTE_COLOR, font=font
            )
    for r, size in enumerate(sizes):
        y = header_h + r * cell_h + PAD + (box_h - FONT_SIZE) // 2
        draw.text((PAD, y), size, fill=NOTE_COLOR, font=font)
    for sample in samples:
        rec = sample.record
        x0 = label_w + columns.index((rec.split, rec.tag)) * cell_w + PAD
        y0 = header_h + sizes.index(rec.size) * cell_h + PAD
        w, h = sample.image.width * scale, sample.image.height * scale
        fx = x0 + (box_w - w - 2 * FRAME) // 2
        fy = y0 + (box_h - h - 2 * FRAME) // 2
        color = CORRECT_COLOR if rec.correct else WRONG_COLOR
        draw.rectangle((fx, fy, fx + w + 2 * FRAME - 1, fy + h + 2 * FRAME - 1), fill=color)
        canvas.paste(sample.image.resize((w, h), Image.NEAREST), (fx + FRAME, fy + FRAME))
        for k, line in enumerate(_wrap(draw, rec.prompt, font, box_w, PROMPT_LINES)):
            draw.text((x0, y0 + box_h + LINE_GAP + k * line_h), line, fill=TEXT_COLOR, font=font)
    return canvas


def write_grid(path: str | os.PathLike[str], samples: Sequence[T2ISample]) -> Path:
    """Draw :func:`sample_grid` and save it as PNG atomically."""
    path = Path(path)
    image = sample_grid(samples)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
