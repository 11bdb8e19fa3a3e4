"""Model profiles: the per-model facts (pooling, limits, Matryoshka dims, prompts, thresholds).

A profile is a TOML file under fixtures/profiles/ (shipped in the wheel as embedgate/profiles/).
Code reads facts from here instead of branching on model names.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

from embedgate.resources import profiles_dir
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

POOLINGS = ("mean", "cls", "last")
DTYPES = ("float32", "float16", "bfloat16")
# [api]: where this model's server must answer the api suite (tests_api/) otherwise than its
# backend documents (fixtures/backends/*.toml, embedgate.serve.behaviours): token_ids and
# over_limit default to the backend's table, so an unset key here is None. tolerance bounds
# 1 - cosine between answers that must agree; by default it follows the dtype, as vLLM's own
# tests do.
DTYPE_TOLERANCE = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}
OVER_LIMIT = ("reject", "truncate", "either")
API_KEYS = ("token_ids", "over_limit", "tolerance")


class ProfileError(ValueError):
    """A profile that is missing or malformed; the message names the file and the field."""


def profile_dirs() -> list[Path]:
    """Where named profiles are looked up (the checkout's fixtures/profiles or the wheel's copy)."""
    return [d for d in (profiles_dir(),) if d.is_dir()]


def available_profiles() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.toml")})


@dataclass(frozen=True)
class ModelProfile:
    name: str
    served_name: str
    embedding_dim: int
    max_tokens: int
    pooling: str
    path: Path
    hf_id: str = ""
    architecture: str = "encoder"
    normalize: bool = True
    matryoshka_dims: tuple[int, ...] = ()
    dtype: str = "float32"
    languages: tuple[str, ...] = ()
    local_weights: dict[str, str] = field(default_factory=dict)
    instructions: dict[str, str] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    # dataset -> why the model is not judged on it (a language or task it does not support)
    not_applicable: dict[str, str] = field(default_factory=dict)
    api: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)  # MTEB's scores (quality.anchors)

    def threshold(self, key: str) -> float:
        """The profile's pass mark for `key`; a missing one is a profile error, not a silent pass."""
        try:
            return float(self.thresholds[key])
        except KeyError:
            raise ProfileError(f"{self.path}: no [thresholds] {key} for profile {self.name!r}; "
                               f"it has {sorted(self.thresholds)}") from None

    def api_setting(self, key: str) -> Any:
        """An [api] override: token_ids or over_limit (None when unset: the backend's table
        decides), or tolerance (default: by dtype)."""
        if key == "tolerance":
            return self.api_tolerance()
        if key not in API_KEYS:
            raise KeyError(f"no [api] setting {key!r}; known: {list(API_KEYS)}")
        return self.api.get(key)

    def api_tolerance(self, served_dtype: str | None = None) -> float:
        """[api] tolerance when set, else the tolerance of the dtype the server computes in
        (vLLM on CPU serves float32 for a bfloat16 profile: 1e-5, not 1e-2), else the
        profile's dtype's."""
        if "tolerance" in self.api:
            return float(self.api["tolerance"])
        return DTYPE_TOLERANCE[served_dtype if served_dtype in DTYPE_TOLERANCE else self.dtype]

    def format_query(self, text: str, task: str = "") -> str:
        template = self.instructions.get("query", "")
        return template.format(task=task, text=text) if template else text

    def format_document(self, text: str) -> str:
        template = self.instructions.get("document", "")
        return template.format(text=text) if template else text

    def local_model_path(self, cache_dir: Path) -> str | None:
        """Resolve packaged weights (``[local_weights] python = "module:callable"``) to a directory.

        The callable may take ``cache_dir`` (for models the kit builds). None when the profile
        has no packaged weights; an ImportError names the pip package to install.
        """
        ref = self.local_weights.get("python")
        if not ref:
            return None
        module_name, _, attr = ref.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            pkg = self.local_weights.get("pip", module_name)
            raise ProfileError(f"profile {self.name!r} takes its weights from {ref}, which is not "
                               f"importable ({exc}); install it: pip install {pkg}") from None
        params = inspect.signature(func).parameters
        return str(func(cache_dir=cache_dir) if "cache_dir" in params else func())


_REQUIRED = ("name", "served_name", "embedding_dim", "max_tokens", "pooling")


def _check(data: dict[str, Any], path: Path) -> None:
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ProfileError(f"{path}: missing required field(s) {missing}")
    if data["pooling"] not in POOLINGS:
        raise ProfileError(f"{path}: pooling {data['pooling']!r} is not one of {POOLINGS}")
    if data.get("dtype", "float32") not in DTYPES:
        raise ProfileError(f"{path}: dtype {data['dtype']!r} is not one of {DTYPES}")
    dims = data.get("matryoshka_dims", [])
    if any(not 0 < d <= data["embedding_dim"] for d in dims) or dims != sorted(set(dims)):
        raise ProfileError(f"{path}: matryoshka_dims {dims} must be increasing sizes in "
                           f"1..embedding_dim ({data['embedding_dim']})")
    for key, template in data.get("instructions", {}).items():
        if template and "{text}" not in template:
            raise ProfileError(f"{path}: instructions.{key} must contain {{text}}: {template!r}")
    _check_api(data.get("api", {}), path)
    not_applicable = data.get("not_applicable", {})
    bad = sorted(k for k, v in not_applicable.items() if not isinstance(v, str) or not v.strip())
    if bad:
        raise ProfileError(f"{path}: [not_applicable] {bad}: give the reason as a string, e.g. "
                           f'atec_zh = "English-only model"')
    both = sorted(set(not_applicable) & set(data.get("thresholds", {})))
    if both:
        raise ProfileError(f"{path}: {both} in both [thresholds] and [not_applicable]; a dataset "
                           f"has a bar or is not applicable, not both")


def _check_api(api: dict[str, Any], path: Path) -> None:
    unknown = sorted(set(api) - set(API_KEYS))
    if unknown:
        raise ProfileError(f"{path}: unknown [api] key(s) {unknown}; known: {sorted(API_KEYS)}")
    if not isinstance(api.get("token_ids", True), bool):
        raise ProfileError(f"{path}: [api] token_ids must be true or false")
    if api.get("over_limit", "reject") not in OVER_LIMIT:
        raise ProfileError(f"{path}: [api] over_limit {api['over_limit']!r} is not one of "
                           f"{OVER_LIMIT}")
    tol = api.get("tolerance", 1e-5)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise ProfileError(f"{path}: [api] tolerance {tol!r} must be a number in (0, 1)")


def load_profile(name_or_path: str | Path) -> ModelProfile:
    """Load a profile by name (fixtures/profiles/NAME.toml) or by path to a TOML file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix == ".toml" or candidate.exists():
        path = candidate
    else:
        path = next((d / f"{name_or_path}.toml" for d in profile_dirs()
                     if (d / f"{name_or_path}.toml").is_file()), candidate)
    if not path.is_file():
        raise ProfileError(f"model profile {str(name_or_path)!r} not found (looked for {path}); "
                           f"known profiles: {', '.join(available_profiles())}")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    _check(data, path)
    return ModelProfile(
        path=path.resolve(),
        matryoshka_dims=tuple(data.pop("matryoshka_dims", ())),
        languages=tuple(data.pop("languages", ())),
        **{k: v for k, v in data.items() if k in ModelProfile.__dataclass_fields__},
    )
