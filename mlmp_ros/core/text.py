"""The text side: class lists with synonyms, prompt templates and their embeddings.

A class may have several names ("person", "person in shirt", ...).  Every name is a
query; after the softmax over all queries a class's probability is the maximum over
its names.  :class:`TextBank` holds the normalised embedding of every template x query
and the ensemble embedding (normalised mean over templates), computed once per class
list and kept on the model's device.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ..resources import config_path
from .config import ConfigError

# Labels are published as 16-bit images (mono16 above 255 classes).
MAX_CLASSES = 65535
# What a single class entry looks like when it was meant as a list name or a file.
_FILE_LIKE = re.compile(r"[/\\]|\.(txt|ya?ml|csv|json|names)$", re.IGNORECASE)
_NAME_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9]*([_.][A-Za-z0-9]+)+$|^[A-Za-z]+[0-9]+$")


def builtin_class_lists() -> list[str]:
    """The names of the built-in class lists (config/class_names/<name>.names.txt)."""
    folder = config_path("class_names")
    return sorted(p.name[: -len(".names.txt")] for p in folder.glob("*.names.txt"))


@dataclass(frozen=True)
class ClassList:
    """Display names and the query names (synonyms) of each class."""

    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise ConfigError("the class list is empty")
        if len(self.names) != len(self.synonyms):
            raise ConfigError("every class needs its list of names")
        for name, syn in zip(self.names, self.synonyms):
            if not name or not syn or any(not s for s in syn):
                raise ConfigError(f"class '{name}' has an empty name")
        if len(self.names) > MAX_CLASSES:
            raise ConfigError(
                f"{len(self.names)} classes: at most {MAX_CLASSES} fit in the 16-bit label image"
            )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def queries(self) -> list[str]:
        return [q for syn in self.synonyms for q in syn]

    @property
    def query_to_class(self) -> list[int]:
        return [c for c, syn in enumerate(self.synonyms) for _ in syn]

    @classmethod
    def from_lines(cls, lines: Sequence[str], names: Sequence[str] | None = None) -> ClassList:
        """One class per entry, synonyms separated by commas; display = ``names`` or first synonym."""
        synonyms = tuple(tuple(s.strip() for s in str(line).split(",")) for line in lines)
        display = tuple(str(n).strip() for n in names) if names is not None else tuple(s[0] for s in synonyms)
        return cls(display, synonyms)

    @classmethod
    def resolve(cls, spec: Sequence[str] | str) -> ClassList:
        """A data set key (``voc20``), a class file, or a list of class entries."""
        if isinstance(spec, str):
            spec = [spec]
        spec = [str(s) for s in spec]
        if len(spec) == 1 and "," not in spec[0]:
            key = spec[0].strip()
            builtin = config_path("class_names", f"{key}.names.txt")
            if builtin.is_file():
                return cls.from_file(builtin)
            path = Path(key).expanduser()
            if key.endswith(".txt"):
                if not path.is_file():
                    raise ConfigError(f"class file not found: {path}")
                return cls.from_file(path)
            _refuse_list_lookalike(key)
        return cls.from_lines(spec)

    @classmethod
    def from_file(cls, path: Path) -> ClassList:
        """Read ``X.names.txt`` (synonyms per line); display names from ``X.classes.txt`` if present."""
        lines = [ln.rstrip("\n") for ln in path.read_text().splitlines() if ln.strip()]
        names = None
        if path.name.endswith(".names.txt"):
            display = path.with_name(path.name[: -len(".names.txt")] + ".classes.txt")
            if display.is_file():
                names = [ln.strip() for ln in display.read_text().splitlines() if ln.strip()]
                if len(names) != len(lines):
                    raise ConfigError(f"{display} has {len(names)} classes but {path} has {len(lines)}")
        if not lines:
            raise ConfigError(f"class file {path} is empty")
        return cls.from_lines(lines, names)


def _refuse_list_lookalike(key: str) -> None:
    """A single class entry that looks like a list name or a file but is neither is a typo."""
    known = builtin_class_lists()
    close = difflib.get_close_matches(key.lower(), known, n=3, cutoff=0.6)
    if not (_FILE_LIKE.search(key) or _NAME_LIKE.match(key) or close):
        return
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        f"classes: '{key}' is neither a built-in class list nor a file; {hint}built-in lists: {', '.join(known)}. "
        "For a single class named so, give it with a synonym ('name, name') or add more classes"
    )


def resolve_templates(spec: Sequence[str] | str) -> list[str]:
    """Templates from a prompt-file name (``templates_7``), a YAML/text file, or literals."""
    if isinstance(spec, str):
        spec = [spec]
    spec = list(spec)
    if len(spec) == 1 and "{}" not in spec[0]:
        key = spec[0]
        path = config_path("prompts", f"{key}.yaml")
        if not path.is_file():
            path = Path(key).expanduser()
        if not path.is_file():
            raise ConfigError(f"prompt templates '{key}' are neither a file nor a name in config/prompts")
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else path.read_text().splitlines()
        spec = data.get("templates", []) if isinstance(data, dict) else list(data or [])
        if not spec:
            raise ConfigError(f"prompt file {path} holds no templates")
    bad = [t for t in spec if not isinstance(t, str) or t.count("{}") != 1]
    if bad:
        raise ConfigError(f"every prompt template needs exactly one '{{}}' for the class name: {bad}")
    return [str(t) for t in spec]


def _plain_causal_text_tower(clip_model: torch.nn.Module) -> bool:
    """True for CLIP's own text tower: a causal mask and the end-of-text token as output."""
    mask = getattr(clip_model, "attn_mask", None)
    if mask is None or getattr(clip_model, "text_pool_type", None) != "argmax" or not hasattr(clip_model, "token_embedding"):
        return False
    upper = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    return bool(torch.equal(torch.isneginf(mask), upper))


def encode_tokens(clip_model: torch.nn.Module, tokens: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised text embeddings (N, D), float32, with gradients if ``context`` needs them.

    ``context`` (n, width) replaces the token embeddings at positions 1..n (TPT).  The
    text tower is causal and reads the end-of-text token, so every position after the
    longest text's end is padding that cannot change the result: only the first
    ``max(end) + 1`` positions are run (about 8x less work than all 77 for short prompts).
    """
    if not _plain_causal_text_tower(clip_model):
        if context is not None:
            raise ValueError("prompt context needs CLIP's causal text tower")
        emb = clip_model.encode_text(tokens).float()
        return emb / emb.norm(dim=-1, keepdim=True)
    ends = tokens.argmax(dim=-1)
    length = int(ends.max()) + 1
    x = clip_model.token_embedding(tokens[:, :length])
    if context is not None:
        n = context.shape[0]
        x = torch.cat([x[:, :1], context.to(x.dtype).expand(x.shape[0], -1, -1), x[:, 1 + n :]], 1)
    x = x + clip_model.positional_embedding[:length].to(x.dtype)
    x = clip_model.transformer(x, attn_mask=clip_model.attn_mask[:length, :length])
    x = clip_model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), ends] @ clip_model.text_projection
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def encode_texts(clip_model: torch.nn.Module, tokenizer, texts: Sequence[str], batch: int = 256) -> torch.Tensor:
    """Normalised text embeddings (N, D) in float32 on the model's device."""
    device = next(clip_model.parameters()).device
    out = [
        encode_tokens(clip_model, tokenizer(list(texts[i : i + batch])).to(device))
        for i in range(0, len(texts), batch)
    ]
    return torch.cat(out, 0)


class TextBank:
    """Embeddings of every template x query, and their per-query ensemble.

    ``per_template`` is (T, Q, D), ``ensemble`` is (Q, D); both normalised, float32.
    """

    def __init__(self, clip_model: torch.nn.Module, tokenizer, classes: ClassList, templates: Sequence[str]):
        self.classes = classes
        self.templates = list(templates)
        self.clip = clip_model
        self.tokenizer = tokenizer
        queries = classes.queries
        emb = self.encode([t.format(q) for t in self.templates for q in queries])
        self.per_template = emb.view(len(self.templates), len(queries), -1)
        mean = self.per_template.mean(dim=0)
        self.ensemble = mean / mean.norm(dim=-1, keepdim=True)
        self.query_to_class = torch.tensor(classes.query_to_class, device=emb.device)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised embeddings of arbitrary texts with the same (frozen) text encoder."""
        return encode_texts(self.clip, self.tokenizer, texts)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_queries(self) -> int:
        return self.ensemble.shape[0]

    def class_probabilities(self, query_probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Per-class probability = max over the class's names (``query_probs`` softmaxed over ``dim``)."""
        if self.num_queries == self.num_classes:
            return query_probs
        moved = query_probs.movedim(dim, 0)
        out = moved.new_zeros((self.num_classes,) + moved.shape[1:])
        index = self.query_to_class.view(-1, *([1] * (moved.dim() - 1))).expand_as(moved)
        out.scatter_reduce_(0, index, moved, reduce="amax", include_self=False)
        return out.movedim(0, dim)
