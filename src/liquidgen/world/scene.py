"""The world: its vocabulary, the scene data structure, relations and the scene sampler.

A scene is 1-4 non-overlapping objects on a plain light background. Each object has a
shape, a colour, one of two sizes and a centre; its bounding box is the ``d x d`` square
around the centre, ``d`` being the size's fraction of the image's short side. Everything
is expressed relative to the short side ``S = min(width, height)`` so that the same rules
hold at 64x64, 128x128, 96x160 or 160x96.

Relations are read from centres with a margin: ``a`` is *left of* ``b`` when
``b.cx - a.cx > RELATION_MARGIN * S`` (likewise right of / above / below). Sampled scenes
never put two centres within ``RELATION_BAND * S`` of that margin on either axis, so a
relation is either clearly true or clearly false, and a parser that misplaces each centre
by less than ``RELATION_BAND * S / 2`` reads every relation correctly.

Held-out compositions (:data:`HELDOUT_PAIRS`, :data:`HELDOUT_RELATIONS`) let generation be
tested on combinations never shown in training: ``split="train"`` scenes never contain a
held-out shape-colour pair, ``split="heldout"`` scenes always contain at least one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from liquidgen.errors import ConfigError
from liquidgen.utils.size import parse_size as parse_wxh
from liquidgen.world.shapes import GEOMETRIES

RGB = tuple[int, int, int]

# ---- vocabulary -------------------------------------------------------------------------
SHAPES: tuple[str, ...] = GEOMETRIES  # circle, square, triangle, diamond, cross, star
# Saturated colours at least 90 apart in RGB (min pair: orange-yellow), all far from the tints.
COLORS: dict[str, RGB] = {
    "red": (215, 35, 35),
    "orange": (245, 130, 0),
    "yellow": (240, 220, 0),
    "green": (35, 160, 55),
    "cyan": (0, 175, 200),
    "blue": (35, 65, 215),
    "purple": (145, 45, 175),
    "black": (35, 35, 35),
}
BACKGROUNDS: dict[str, RGB] = {
    "white": (250, 250, 250),
    "cream": (250, 244, 224),
    "light gray": (232, 232, 232),
    "light blue": (226, 238, 250),
    "light green": (226, 246, 232),
}
SIZES: dict[str, float] = {"small": 0.22, "large": 0.34}  # box side as a fraction of S
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
HORIZONTAL = ("left of", "right of")

# ---- layout rules (fractions of the short side S) -----------------------------------------
BORDER_MARGIN = 0.04  # free space between any box and the image edge
OBJECT_GAP = 0.07  # free space between any two boxes (along x or y)
RELATION_MARGIN = 0.10  # centre offset above which a relation holds
RELATION_BAND = 0.05  # sampled offsets avoid RELATION_MARGIN +- RELATION_BAND
MAX_OBJECTS = 4
MAX_PLACEMENT_TRIES = 60  # per object before the whole layout is resampled
MAX_LAYOUT_TRIES = 200
MIN_SHORT_SIDE = 32  # pixels; below this small objects are too few pixels to tell apart
MAX_ASPECT = 4  # longest side / short side
COORD_DECIMALS = 2  # pixel coordinates are stored rounded, so JSON round-trips exactly

# ---- held-out compositions ----------------------------------------------------------------
# One pair per shape, each with a different colour, so every shape and every colour is still
# seen in training (with other partners).
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("circle", "purple"),
        ("square", "orange"),
        ("triangle", "cyan"),
        ("diamond", "red"),
        ("cross", "yellow"),
        ("star", "green"),
    }
)
# (unordered shape pair, axis): no training text states a relation of this pair on this axis
# ("circle left of star" and "star right of circle" are both held out).
HELDOUT_RELATIONS: frozenset[tuple[frozenset[str], str]] = frozenset(
    {
        (frozenset({"circle", "star"}), "horizontal"),
        (frozenset({"square", "triangle"}), "vertical"),
        (frozenset({"diamond", "cross"}), "horizontal"),
    }
)
SPLITS: tuple[str, ...] = ("train", "heldout")


def is_heldout_pair(shape: str, color: str) -> bool:
    """True when the shape-colour pair is reserved for the held-out split."""
    return (shape, color) in HELDOUT_PAIRS


def relation_axis(relation: str) -> str:
    """``"horizontal"`` for left/right, ``"vertical"`` for above/below."""
    return "horizontal" if relation in HORIZONTAL else "vertical"


def is_heldout_relation(shape_a: str, relation: str, shape_b: str) -> bool:
    """True when stating ``shape_a relation shape_b`` is reserved for the held-out split."""
    return (frozenset({shape_a, shape_b}), relation_axis(relation)) in HELDOUT_RELATIONS


def check_split(split: str) -> str:
    """Validate a split name (raises :class:`ConfigError`)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


# ---- data structures ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WorldObject:
    """One object: attributes plus geometry in pixels (corner coordinates, y down)."""

    shape: str
    color: str
    size: str
    cx: float  # centre x in pixels
    cy: float  # centre y in pixels
    bbox: tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "shape": self.shape,
            "color": self.color,
            "size": self.size,
            "cx": self.cx,
            "cy": self.cy,
            "bbox": list(self.bbox),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorldObject:
        """Inverse of :meth:`to_dict`."""
        x0, y0, x1, y1 = (float(v) for v in data["bbox"])
        return cls(
            shape=str(data["shape"]),
            color=str(data["color"]),
            size=str(data["size"]),
            cx=float(data["cx"]),
            cy=float(data["cy"]),
            bbox=(x0, y0, x1, y1),
        )

    def describe(self, *, with_size: bool = True) -> str:
        """Noun phrase without article, e.g. ``"large red circle"``."""
        words = [self.size] if with_size else []
        return " ".join([*words, self.color, self.shape])


@dataclasses.dataclass(frozen=True)
class Scene:
    """An image's complete content: size, background tint and objects."""

    width: int
    height: int
    background: str
    objects: tuple[WorldObject, ...]

    @property
    def short_side(self) -> int:
        """``S = min(width, height)``, the unit of every layout rule."""
        return min(self.width, self.height)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "width": self.width,
            "height": self.height,
            "background": self.background,
            "objects": [o.to_dict() for o in self.objects],
        }

    def to_json(self) -> str:
        """One-line JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scene:
        """Inverse of :meth:`to_dict`."""
        return cls(
            width=int(data["width"]),
            height=int(data["height"]),
            background=str(data["background"]),
            objects=tuple(WorldObject.from_dict(o) for o in data["objects"]),
        )

    @classmethod
    def from_json(cls, text: str) -> Scene:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def relation_holds(self, a: WorldObject, relation: str, b: WorldObject) -> bool:
        """Whether ``a`` is ``relation`` ``b`` (see the module docstring for the margin)."""
        return relation_holds(a, relation, b, self.short_side)

    def relations(self) -> list[tuple[int, str, int]]:
        """Every true ``(i, relation, j)`` between distinct objects, by object index."""
        return [
            (i, rel, j)
            for i, a in enumerate(self.objects)
            for j, b in enumerate(self.objects)
            if i != j
            for rel in RELATIONS
            if self.relation_holds(a, rel, b)
        ]


def relation_holds(a: WorldObject, relation: str, b: WorldObject, short_side: float) -> bool:
    """Whether ``a`` is ``relation`` ``b`` given the image's short side in pixels."""
    margin = RELATION_MARGIN * short_side
    if relation == "left of":
        return b.cx - a.cx > margin
    if relation == "right of":
        return a.cx - b.cx > margin
    if relation == "above":
        return b.cy - a.cy > margin
    if relation == "below":
        return a.cy - b.cy > margin
    raise ConfigError(f"unknown relation {relation!r}; expected one of {', '.join(RELATIONS)}")


def make_object(
    shape: str, color: str, size: str, cx: float, cy: float, short_side: int
) -> WorldObject:
    """An object of the world's geometry: a ``d x d`` box around ``(cx, cy)``."""
    side = SIZES[size] * short_side
    cx, cy = round(cx, COORD_DECIMALS), round(cy, COORD_DECIMALS)
    box = tuple(
        round(v, COORD_DECIMALS)
        for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    )
    return WorldObject(shape, color, size, cx, cy, box)  # type: ignore[arg-type]


# ---- sampling ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ObjectRequest:
    """Attributes wanted for one object; ``None`` means "draw at random"."""

    shape: str | None = None
    color: str | None = None
    size: str | None = None


@dataclasses.dataclass(frozen=True)
class RelationRequest:
    """Object ``a`` must be ``relation`` object ``b`` (indices into the request list)."""

    a: int
    relation: str
    b: int


def parse_size(text: str) -> tuple[int, int]:
    """``"160x96"`` -> ``(160, 96)`` (width, height), a size a scene fits in; raises
    :class:`ConfigError` (the WxH parser is :func:`liquidgen.utils.size.parse_size`)."""
    w, h = parse_wxh(text, square=False)
    check_image_size(w, h)
    return w, h


def check_image_size(width: int, height: int) -> None:
    """Raise :class:`ConfigError` for images too small to hold a scene."""
    if min(width, height) < MIN_SHORT_SIDE:
        raise ConfigError(
            f"image size {width}x{height} too small: the short side must be >= {MIN_SHORT_SIDE}"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ConfigError(
            f"image size {width}x{height}: aspect ratio above {MAX_ASPECT} is not supported"
        )


def _attributes_allowed(shape: str, color: str, split: str | None) -> bool:
    return split != "train" or not is_heldout_pair(shape, color)


def _draw_attributes(
    rng: np.random.Generator, request: ObjectRequest, split: str | None
) -> tuple[str, str, str]:
    """Fill a request's missing attributes, never producing a pair the split forbids."""
    for _ in range(MAX_PLACEMENT_TRIES):
        shape = request.shape or SHAPES[rng.integers(len(SHAPES))]
        color = request.color or list(COLORS)[rng.integers(len(COLORS))]
        if _attributes_allowed(shape, color, split):
            size = request.size or list(SIZES)[rng.integers(len(SIZES))]
            return shape, color, size
    raise ConfigError(f"object {request} cannot be drawn in split {split!r}")


def _offsets_clear(delta: float, short_side: float) -> bool:
    """An axis offset far enough from the relation margin to be unambiguous."""
    d = abs(delta) / short_side
    return not (RELATION_MARGIN - RELATION_BAND <= d <= RELATION_MARGIN + RELATION_BAND)


def _fits(obj: WorldObject, placed: Sequence[WorldObject], short_side: float) -> bool:
    gap = OBJECT_GAP * short_side
    for other in placed:
        ax0, ay0, ax1, ay1 = obj.bbox
        bx0, by0, bx1, by1 = other.bbox
        apart_x = ax1 + gap <= bx0 or bx1 + gap <= ax0
        apart_y = ay1 + gap <= by0 or by1 + gap <= ay0
        if not (apart_x or apart_y):
            return False
        if not (
            _offsets_clear(obj.cx - other.cx, short_side)
            and _offsets_clear(obj.cy - other.cy, short_side)
        ):
            return False
    return True


def _place(
    rng: np.random.Generator,
    attributes: Sequence[tuple[str, str, str]],
    width: int,
    height: int,
    relations: Sequence[RelationRequest],
    lattice: int | None = None,
) -> tuple[WorldObject, ...] | None:
    """Rejection-sample centres for the objects in order; ``None`` if a placement failed.

    With ``lattice`` (pixels), centres are multiples of it on both axes.
    """
    s = min(width, height)
    placed: list[WorldObject] = []
    for shape, color, size in attributes:
        half = SIZES[size] * s / 2 + BORDER_MARGIN * s
        for _ in range(MAX_PLACEMENT_TRIES):
            if lattice:
                cx = lattice * float(
                    rng.integers(math.ceil(half / lattice), (width - half) // lattice + 1)
                )
                cy = lattice * float(
                    rng.integers(math.ceil(half / lattice), (height - half) // lattice + 1)
                )
            else:
                cx = rng.uniform(half, width - half)
                cy = rng.uniform(half, height - half)
            obj = make_object(shape, color, size, cx, cy, s)
            candidate = [*placed, obj]
            if _fits(obj, placed, s) and all(
                relation_holds(candidate[r.a], r.relation, candidate[r.b], s)
                for r in relations
                if max(r.a, r.b) < len(candidate)
            ):
                placed.append(obj)
                break
        else:
            return None
    return tuple(placed)


def sample_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    split: str | None = "train",
    objects: Sequence[ObjectRequest] | None = None,
    relations: Sequence[RelationRequest] = (),
    lattice: int | None = None,
    num_objects: int | None = None,
) -> Scene:
    """Draw a random scene, deterministic given ``rng``'s state.

    Without ``objects``, draws 1-4 objects with uniform attributes; with ``objects``, draws
    exactly those (filling unspecified attributes) such that every requested relation
    holds. ``split="train"`` never draws a held-out shape-colour pair; ``split="heldout"``
    makes sure at least one object is a held-out pair (redrawing one if needed);
    ``split=None`` imposes neither. ``lattice`` (pixels) puts every centre on multiples of
    it (e.g. half a tokenizer cell, so that an object always covers its cells the same way:
    the image tokenizer then gives it the same codes wherever it stands); the layout rules
    are unchanged. ``num_objects`` fixes the count of a random scene.
    """
    if lattice is not None and lattice <= 0:
        raise ConfigError(f"lattice must be a positive number of pixels, got {lattice}")
    if num_objects is not None and not 1 <= num_objects <= MAX_OBJECTS:
        raise ConfigError(f"num_objects must be in 1..{MAX_OBJECTS}, got {num_objects}")
    if split is not None:
        check_split(split)
    check_image_size(width, height)
    for r in relations:
        if r.relation not in RELATIONS:
            raise ConfigError(f"unknown relation {r.relation!r}")
    background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    # the count is drawn once, before the layout tries: redrawing it on a failed layout
    # would favour the counts that fit easily (1-4 were 29/29/25/17%, not uniform)
    requests = (
        list(objects)
        if objects is not None
        else [ObjectRequest()] * (num_objects or int(rng.integers(1, MAX_OBJECTS + 1)))
    )
    for _ in range(MAX_LAYOUT_TRIES):
        attrs = [_draw_attributes(rng, req, split) for req in requests]
        if split == "heldout" and not any(is_heldout_pair(sh, co) for sh, co, _ in attrs):
            attrs = _force_heldout(rng, requests, attrs)
            if attrs is None:
                raise ConfigError("these object requests leave no room for a held-out pair")
        placed = _place(rng, attrs, width, height, relations, lattice)
        if placed is not None:
            return Scene(width, height, background, placed)
    raise ConfigError(f"could not lay out {len(requests)} objects in {width}x{height}")


def _force_heldout(
    rng: np.random.Generator,
    requests: Sequence[ObjectRequest],
    attrs: list[tuple[str, str, str]],
) -> list[tuple[str, str, str]] | None:
    """Turn one object whose request leaves freedom into a held-out shape-colour pair."""
    order = rng.permutation(len(requests))
    for i in order:
        req = requests[i]
        options = sorted(
            (sh, co)
            for sh, co in HELDOUT_PAIRS
            if req.shape in (None, sh) and req.color in (None, co)
        )
        if options:
            shape, color = options[rng.integers(len(options))]
            attrs = list(attrs)
            attrs[i] = (shape, color, attrs[i][2])
            return attrs
    return None


# ---- comparison ----------------------------------------------------------------------------------
POSITION_TOLERANCE = 0.025  # centres within this fraction of S count as the same place


def scenes_match(
    expected: Scene,
    found: Scene,
    *,
    tolerance: float = POSITION_TOLERANCE,
    attributes: Iterable[str] = ("shape", "color", "size"),
) -> bool:
    """Exact recovery: same number of objects and a one-to-one matching with equal attributes
    and centres within ``tolerance * S``.

    Objects are matched greedily by distance, which is exact here because objects are at
    least ``OBJECT_GAP * S`` apart, far more than the tolerance.
    """
    if len(expected.objects) != len(found.objects):
        return False
    limit = tolerance * expected.short_side
    attrs = tuple(attributes)
    remaining = list(found.objects)
    for obj in expected.objects:
        best = min(remaining, key=lambda o: math.hypot(o.cx - obj.cx, o.cy - obj.cy))
        if math.hypot(best.cx - obj.cx, best.cy - obj.cy) > limit:
            return False
        if any(getattr(best, a) != getattr(obj, a) for a in attrs):
            return False
        remaining.remove(best)
    return True
