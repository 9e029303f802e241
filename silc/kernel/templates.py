"""The registry of prompt templates: one vocabulary of named sets, template files and template lists.

Named sets (texts hold ``{}`` where the class name goes):

- ``openai80``: open_clip's 80 OpenAI ImageNet templates (``open_clip.zero_shot_metadata``);
- ``simple7``: open_clip's 7 "simple" ImageNet templates (``simple`` is accepted as another name for it);
- ``photo``: the one prompt ``a photo of a {}.``;
- ``identity``: the bare class name.

A dataset's own templates (e.g. a classification dataset's ``templates.txt``) are read by its reader and
wrapped as :class:`Templates` with the ``{c}`` marker (clip_benchmark's ``str.format(c=name)`` form).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from silc.errors import UserError

TEMPLATE_SETS = ("openai80", "simple7", "photo", "identity")
TEMPLATE_ALIASES = {"simple": "simple7"}
TEMPLATE_NAMES = (*TEMPLATE_SETS, *TEMPLATE_ALIASES)  # every accepted name (e.g. argparse choices)


@dataclass(frozen=True)
class Templates:
    """Prompt templates and where they came from.

    ``marker`` says how a class name is put in: ``"{}"`` replaces that placeholder (``str.replace``), ``"{c}"``
    fills the template with ``str.format(c=name)`` (clip_benchmark's template files).
    """

    name: str
    texts: tuple[str, ...]
    marker: str = "{}"

    @property
    def sha256(self) -> str:
        """Hash of the template strings (order matters), for result provenance."""
        return hashlib.sha256(json.dumps(list(self.texts)).encode()).hexdigest()

    def describe(self) -> dict[str, object]:
        """``{name, count, sha256}`` as stored in result records."""
        return {"name": self.name, "count": len(self.texts), "sha256": self.sha256}

    def fill(self, classname: str) -> list[str]:
        """The prompts for one class name, in template order."""
        if self.marker == "{c}":
            return [t.format(c=classname) for t in self.texts]
        return [t.replace(self.marker, classname) for t in self.texts]

    def with_marker(self, marker: str) -> Templates:
        """The same templates with ``marker`` in place of this set's placeholder."""
        return Templates(self.name, tuple(t.replace(self.marker, marker) for t in self.texts), marker)


def template_set(name: str) -> Templates:
    """A named template set (see the module docstring); unknown names raise a one-line UserError."""
    canonical = TEMPLATE_ALIASES.get(name, name)
    if canonical in ("openai80", "simple7"):
        from open_clip import zero_shot_metadata as meta

        fns = meta.OPENAI_IMAGENET_TEMPLATES if canonical == "openai80" else meta.SIMPLE_IMAGENET_TEMPLATES
        return Templates(name, tuple(fn("{}") for fn in fns))
    if canonical == "photo":
        return Templates(name, ("a photo of a {}.",))
    if canonical == "identity":
        return Templates(name, ("{}",))
    raise UserError(f"templates {name!r}: expected one of {', '.join(TEMPLATE_SETS)}")


def is_template_set(name: str) -> bool:
    """Whether ``name`` names a built-in template set (aliases included)."""
    return TEMPLATE_ALIASES.get(name, name) in TEMPLATE_SETS


def resolve_templates(spec: str | Sequence[str]) -> Templates:
    """A named set, a text file with one template per line (``{}`` marks the class name), or a list of
    template strings; bad specs raise a one-line UserError."""
    if not isinstance(spec, str):
        return _checked("<list>", tuple(spec))
    if is_template_set(spec):
        return template_set(spec)
    path = Path(spec)
    if not path.is_file():
        raise UserError(
            f"templates {spec!r}: expected one of {', '.join(TEMPLATE_SETS)} or a text file of templates"
        )
    lines = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return _checked(str(path), lines)


def _checked(name: str, texts: tuple[str, ...]) -> Templates:
    if not texts:
        raise UserError(f"templates {name}: no templates found")
    bad = [t for t in texts if "{}" not in t]
    if bad:
        raise UserError(f"templates {name}: every template needs a '{{}}' for the class name, got {bad[0]!r}")
    return Templates(name, texts)
