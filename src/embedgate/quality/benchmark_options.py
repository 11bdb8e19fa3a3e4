"""The benchmark options (which MTEB benchmarks, where their data is, how long texts are sent) and
the resolved `BenchmarkOptions`.

Kit options like any other (`embedgate.config.options`): ``--embedgate-benchmark``,
``--embedgate-benchmark-mirror`` and ``--embedgate-truncation``, their ``EMBEDGATE_*`` twins and
``benchmarks`` / ``benchmark_mirror`` / ``truncation`` keys in ``[tool.embedgate]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from embedgate.config.options import OptionSpec, PathBase, resolve_values
from embedgate.quality.benchmarks import PROFILE_KEYWORD, parse_selection
from embedgate.quality.truncation import MODES


def _benchmarks(value: Any) -> tuple[str, ...]:
    """Entries as a list (config) or one string (env: separated by `;` or spaces)."""
    items = re.split(r"[;\s]+", value) if isinstance(value, str) else [str(v) for v in value]
    items = tuple(i.strip() for i in items if i and i.strip())
    for item in items:
        if item not in (PROFILE_KEYWORD, "none"):
            parse_selection(item)  # a malformed entry is refused here, with its source
    return items


def _mode(value: str) -> str:
    if value not in MODES:
        raise ValueError(f"must be one of {', '.join(MODES)}")
    return value


BENCHMARK_HELP = (
    "MTEB benchmark to run as quality tests (one test per split and subset, id "
    "TASK/split/subset), repeatable: NAME, NAME:split[,split] or NAME:split:subset[,subset] "
    "(e.g. ATEC:validation, XNLI:validation:en,zh); `profile` for every benchmark the profile "
    "has a published MTEB score for; `none` for none. Default: profile when a mirror is given, "
    "else none.")
MIRROR_HELP = ("Folder of benchmark data, DIR/<dataset id>/<revision>/ as `embedgate benchmarks "
               "download DIR` writes it; read before the Hugging Face cache and the hub.")
TRUNCATION_HELP = (
    "A text over the profile's max_tokens: api (resend it with vLLM's truncate_prompt_tokens), "
    "tokenizer (cut it here with the model's tokenizer and send the ids), fail (fail the test, "
    "naming the text), or auto (api on vLLM, else tokenizer where the model's tokenizer is "
    "here, else fail). MTEB embeds such texts truncated.")
OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("benchmark", "benchmarks", _benchmarks, (), BENCHMARK_HELP,
               metavar="NAME[:SPLIT[:SUBSETS]]", repeatable=True),
    OptionSpec("benchmark-mirror", "benchmark_mirror", Path, None, MIRROR_HELP, metavar="DIR"),
    OptionSpec("truncation", "truncation", _mode, "auto", TRUNCATION_HELP,
               metavar="{" + ",".join(MODES) + "}"),
)


@dataclass(frozen=True)
class BenchmarkOptions:
    benchmarks: tuple[str, ...] = ()
    benchmark_mirror: Path | None = None
    truncation: str = "auto"
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def selected(self) -> tuple[str, ...]:
        """What to run: the entries given, else the profile's published set when a mirror is."""
        if self.benchmarks:
            return self.benchmarks
        return (PROFILE_KEYWORD,) if self.benchmark_mirror is not None else ()


def resolve(cli: Mapping[str, Any], env: Mapping[str, str], config: Mapping[str, Any],
            base: PathBase) -> BenchmarkOptions:
    values, sources = resolve_values(OPTIONS, cli, env, config)
    values["benchmark_mirror"] = base.resolve(values["benchmark_mirror"],
                                              sources["benchmark_mirror"])
    return BenchmarkOptions(**values, sources=sources)


__all__ = ["OPTIONS", "BenchmarkOptions", "resolve"]
