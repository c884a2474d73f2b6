"""Env spec strings: ``family:name?key=value&key=value``.

Examples: ``procgen:coinrun?distribution_mode=easy&num_levels=500``, ``atari:breakout?episodic_life=true`` and
``minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode


@dataclass(frozen=True)
class EnvSpec:
    family: str  # "procgen" | "minigrid" | "atari"
    name: str  # game or registered env id
    options: dict = field(default_factory=dict)

    def __str__(self) -> str:
        query = urlencode(sorted((k, _fmt(v)) for k, v in self.options.items()))
        return f"{self.family}:{self.name}" + (f"?{query}" if query else "")

    def replace(self, **options) -> "EnvSpec":
        """A copy with some options changed (``None`` removes an option)."""
        merged = {**self.options, **options}
        return EnvSpec(self.family, self.name, {k: v for k, v in merged.items() if v is not None})


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _coerce(text: str):
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def option_list(value) -> tuple:
    """A comma-separated option value (``invisible=saw,enemy``) as the tuple of its items."""
    return tuple(k.strip() for k in str(value or "").split(",") if k.strip())


def invisible_option(value, allowed: tuple, family: str) -> tuple:
    """The kinds ``invisible=`` names, each one of ``allowed``, or a clear error naming those that can be hidden."""
    kinds = option_list(value)
    bad = sorted(set(kinds) - set(allowed))
    if bad:
        raise ValueError(f"{family} option invisible={value!r}: {', '.join(bad)} cannot be hidden; expected any of "
                         f"{', '.join(allowed)}, comma-separated")
    return kinds


def parse_spec(spec: "str | EnvSpec") -> EnvSpec:
    """Parse ``family:name?opts`` into an :class:`EnvSpec` (values typed as bool/int/float/str)."""
    if isinstance(spec, EnvSpec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"env spec {spec!r} is not of the form 'family:name?key=value', "
            "e.g. 'procgen:coinrun?distribution_mode=easy' or 'minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb'"
        )
    head, _, query = spec.partition("?")
    family, _, name = head.partition(":")
    options = {k: _coerce(v) for k, v in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))}
    return EnvSpec(family.strip().lower(), name.strip(), options)
