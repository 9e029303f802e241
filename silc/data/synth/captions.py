"""Captions for scenes: objects (size, colour, shape), the stuff they sit on and their relations, varied wording;
object-centric photos get a short caption about their dominant object."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from silc.data.synth.render import Rendered
from silc.data.synth.world import SHAPES, STUFF, Obj, Scene

SIZE_WORDS = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium-sized", "mid-sized", "medium"),
    "large": ("large", "big", "huge"),
}
STUFF_WORDS = {
    "grass": ("the grass", "a green lawn", "grass"),
    "water": ("the water", "a lake", "blue water"),
    "sand": ("the sand", "a sandy beach", "sand"),
    "snow": ("the snow", "a snowy field", "snow"),
    "sky": ("the sky", "a blue sky", "a cloudy sky"),
    "brick wall": ("a brick wall", "red bricks", "a wall of bricks"),
}
STUFF_PREP = {
    "grass": ("on", "on top of"),
    "water": ("on", "floating on"),
    "sand": ("on", "lying on"),
    "snow": ("on", "in"),
    "sky": ("in", "up in"),
    "brick wall": ("in front of", "against"),
}
RELATION_WORDS = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath"),
    "near": ("next to", "beside", "near"),
    "front": ("in front of", "overlapping", "partly covering"),
    "behind": ("behind", "partly hidden by", "partly covered by"),
}
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def article(phrase: str) -> str:
    """'a' or 'an' + phrase."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def plural(shape: str) -> str:
    """English plural of a shape name."""
    return shape + "es" if shape.endswith(("x", "s", "sh", "ch")) else shape + "s"


def tokens(sentence: str) -> list[str]:
    """Karpathy-style tokens: lower case words without punctuation."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", sentence.lower())


class _Describer:
    """Phrase builder for one scene, drawing word choices from ``rng``."""

    def __init__(self, scene: Scene, rendered: Rendered, rng: np.random.Generator):
        self.scene, self.rng, self.stuff_at, self.covers = scene, rng, rendered.stuff, rendered.covers
        crowd = set(scene.crowd)
        singles = [i for i in range(len(scene.objects)) if i not in crowd]
        # Most prominent first: large before small, ties by draw order.
        self.items: list[list[int]] = [[i] for i in sorted(singles, key=lambda i: -scene.objects[i].radius)]
        if crowd:
            self.items.insert(min(2, len(self.items)), sorted(crowd))
        present = sorted({int(k) for k in np.unique(self.stuff_at)})
        self.stuff = [STUFF[k] for k in present]

    def pick(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def noun(self, item: list[int], size_p: float = 0.6, colour_p: float = 1.0) -> str:
        obj = self.scene.objects[item[0]]
        if len(item) > 1:
            return f"a group of {NUMBERS[len(item)] if len(item) < len(NUMBERS) else len(item)} {obj.colour} {plural(SHAPES[obj.shape])}"
        # colour_p < 1 draws from the RNG; the default (always named) draws nothing, so other captions stay as they were.
        named = colour_p >= 1.0 or self.rng.random() < colour_p
        words = [obj.colour, SHAPES[obj.shape]] if named else [SHAPES[obj.shape]]
        if self.rng.random() < size_p:
            words.insert(0, self.pick(SIZE_WORDS[obj.size]))
        return article(" ".join(words))

    def listing(self, items: list[list[int]]) -> str:
        nouns = [self.noun(it) for it in items]
        return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]

    def ground_of(self, obj: Obj) -> str:
        n = self.scene.size
        y = min(n - 1, max(0, int(obj.cy)))
        x = min(n - 1, max(0, int(obj.cx)))
        return STUFF[int(self.stuff_at[y, x])]

    def placed(self, item: list[int]) -> str:
        """'<noun> <prep> <stuff>' for the stuff under the item's centre."""
        stuff = self.ground_of(self.scene.objects[item[0]])
        return f"{self.noun(item)} {self.pick(STUFF_PREP[stuff])} {self.pick(STUFF_WORDS[stuff])}"

    def relation(self, a: list[int], b: list[int]) -> str:
        """Where item a is relative to item b."""
        oa, ob = self.scene.objects[a[0]], self.scene.objects[b[0]]
        dx, dy = oa.cx - ob.cx, oa.cy - ob.cy
        close = np.hypot(dx, dy) < 1.05 * (oa.radius + ob.radius)
        if any(j in self.covers[i] for i in a for j in b) and self.rng.random() < 0.5:
            key = "front"
        elif any(i in self.covers[j] for i in a for j in b) and self.rng.random() < 0.5:
            key = "behind"
        elif close and self.rng.random() < 0.5:
            key = "near"
        elif abs(dx) >= abs(dy):
            key = "left" if dx < 0 else "right"
        else:
            key = "above" if dy < 0 else "below"
        return self.pick(RELATION_WORDS[key])

    def background(self) -> str:
        words = [self.pick(STUFF_WORDS[s]) for s in self.stuff]
        return words[0] if len(words) == 1 else f"{words[0]} and {words[1]}"


def _t_relation(d: _Describer) -> str:
    if len(d.items) < 2:
        return f"{d.placed(d.items[0])}."
    a, b = d.items[0], d.items[1]
    return f"{d.noun(a)} {d.relation(a, b)} {d.noun(b)}."


def _t_relation_rev(d: _Describer) -> str:
    if len(d.items) < 2:
        return f"{d.background()} with {d.noun(d.items[0])}."
    a, b = d.items[1], d.items[0]
    rest = f", and {d.listing(d.items[2:4])}" if len(d.items) > 2 else ""
    return f"{d.noun(a)} {d.relation(a, b)} {d.noun(b)}{rest}."


def _t_photo(d: _Describer) -> str:
    return f"a photo of {d.listing(d.items[:4])}."


def _t_placed(d: _Describer) -> str:
    rest = d.items[1:3]
    tail = f", with {d.listing(rest)} nearby" if rest else ""
    return f"{d.placed(d.items[0])}{tail}."


def _t_there(d: _Describer) -> str:
    n = len(d.items)
    if n == 1:
        return f"there is {d.noun(d.items[0])} in the picture."
    return f"there are {NUMBERS[min(n, 10)]} things here: {d.listing(d.items[:4])}."


def _t_background(d: _Describer) -> str:
    return f"{d.background()} with {d.listing(d.items[:3])}."


def _t_shapes(d: _Describer) -> str:
    return f"{d.listing(d.items[:4])} on a background of {d.background()}."


def _t_scene(d: _Describer) -> str:
    parts = [d.placed(d.items[0])]
    if len(d.items) > 1:
        parts.append(f"{d.noun(d.items[1])} is {d.relation(d.items[1], d.items[0])} it")
    return "; ".join(parts) + "."


def _t_list(d: _Describer) -> str:
    names = []
    for it in d.items[:4]:
        o = d.scene.objects[it[0]]
        names.append(f"{o.colour} {SHAPES[o.shape] if len(it) == 1 else plural(SHAPES[o.shape])}")
    return ", ".join(names) + "."


def _t_image(d: _Describer) -> str:
    return f"an image showing {d.listing(d.items[:3])}, seen against {d.background()}."


TEMPLATES: tuple[Callable[[_Describer], str], ...] = (
    _t_relation,
    _t_relation_rev,
    _t_photo,
    _t_placed,
    _t_there,
    _t_background,
    _t_shapes,
    _t_scene,
    _t_list,
    _t_image,
)
# Object-centric photos (one dominant shape): the caption is about that object, like a web product photo's.
# Half of them leave the colour out: when every caption names the colour, colour (with size and background) tells
# the captions of a batch apart and a tiny ViT barely learns shape (docs/experiments.md).
OBJECT_COLOUR_P = 0.5
OBJECT_TEMPLATES = (
    "a photo of {obj}.",
    "{obj}.",
    "a close-up of {obj}.",
    "{obj} in the middle of the picture.",
    "a picture of {obj} on {bg}.",
)
EMPTY_TEMPLATES = (
    "a view of {bg}.",
    "an empty scene: {bg}.",
    "a photo of {bg} with nothing on it.",
    "just {bg}.",
    "{bg}, no shapes in sight.",
)


def captions(scene: Scene, rendered: Rendered, rng: np.random.Generator, count: int) -> list[str]:
    """``count`` different captions for the scene (different templates, then different word choices)."""
    d = _Describer(scene, rendered, rng)
    if scene.object_centric:
        # {bg} is drawn only where the template uses it, after the object's words.
        make = [
            lambda t=t: t.format(
                obj=d.noun(d.items[0], 0.4, OBJECT_COLOUR_P), bg=d.background() if "{bg}" in t else ""
            )
            for t in OBJECT_TEMPLATES
        ]
    elif d.items:
        make = [lambda t=t: t(d) for t in TEMPLATES]
    else:
        make = [lambda t=t: t.format(bg=d.background()) for t in EMPTY_TEMPLATES]
    order = rng.permutation(len(make))
    out: list[str] = []
    for attempt in range(count * 20):
        text = make[order[attempt % len(order)]]()
        if text not in out:
            out.append(text)
        if len(out) == count:
            return out
    raise RuntimeError(f"only {len(out)} distinct captions for a scene")
