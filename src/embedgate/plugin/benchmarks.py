"""The MTEB benchmarks' hooks (loaded by `embedgate.plugin`).

Hooks and thin helpers only: the benchmark options (group "embedgate-benchmarks"); at configure
time the benchmarks chosen become quality tasks beside the datasets, each with its bar from the
profile (published MTEB score minus tolerance, unless [thresholds] names it); the parametrization
of the "reproduces published" check; the encoder that handles texts over the model's limit; and
what each result records about its benchmark, its published anchor and its truncation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from embedgate.config.options import add_options
from embedgate.models.profiles import ModelProfile, ProfileError, load_profile
from embedgate.models.reference import load_tokenizer, resolve_model_dir
from embedgate.quality.anchors import AnchorError, profile_anchors
from embedgate.quality.benchmark_options import OPTIONS, BenchmarkOptions, resolve
from embedgate.quality.benchmarks import (BenchmarkData, BenchmarkError, BenchmarkSpec,
                                          resolve_benchmarks, selections_from)
from embedgate.quality.mirror import DataLocator
from embedgate.quality.truncation import (LimitAwareEncoder, LimitedEmbed, OverLimitError,
                                          choose_mode, truncation_note)
from embedgate.session import get_run, resolve_plugin_options

MARKER = "mteb: an MTEB benchmark test (task, data and main score as the mteb package defines them)"


@dataclass
class BenchmarkRun:
    options: BenchmarkOptions
    specs: list[BenchmarkSpec] = field(default_factory=list)


BENCH_KEY = pytest.StashKey[BenchmarkRun]()


NOTHING_TO_REPRODUCE = "nothing-to-reproduce"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("embedgate-benchmarks",
                                "embedgate benchmarks: MTEB tasks, their data, long inputs"),
                OPTIONS)


def with_bar(spec: BenchmarkSpec, profile: ModelProfile, anchors: dict[str, Any]) -> BenchmarkSpec:
    """The spec with its anchor and bar: the profile's [thresholds] entry for the test id, else
    the published score minus the profile's tolerance, else none."""
    anchor = anchors.get(spec.name)
    if spec.name in profile.thresholds:
        return dataclasses.replace(spec, anchor=anchor,
                                   threshold=float(profile.thresholds[spec.name]),
                                   threshold_source=f"profile [thresholds] {spec.name!r}")
    if anchor is not None:
        return dataclasses.replace(spec, anchor=anchor, threshold=anchor.bar,
                                   threshold_source=anchor.bar_source())
    return spec


@pytest.hookimpl(trylast=True)  # after embedgate.plugin has made the session's RunState
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    state = get_run(config)
    options = resolve_plugin_options(config, OPTIONS, resolve)
    bench = BenchmarkRun(options)
    config.stash[BENCH_KEY] = bench
    if not options.selected:
        return
    try:
        profile = load_profile(state.settings.profile)
        anchors = profile_anchors(profile)
        cache = state.settings.cache_dir / "hf"
        data = BenchmarkData(DataLocator(mirror=options.benchmark_mirror,
                                         cache_dirs=(cache / "hub", None),
                                         download_dir=cache / "hub"),
                             datasets_cache=cache / "datasets")
        specs = resolve_benchmarks(selections_from(options.selected, anchors), data)
    except (ProfileError, AnchorError, BenchmarkError) as exc:
        raise pytest.UsageError(f"embedgate: {exc}") from None
    taken = {t.name for t in state.tasks}
    clash = [s.name for s in specs if s.name in taken]
    if clash:
        raise pytest.UsageError(f"embedgate: dataset names {clash} are also benchmark test ids")
    bench.specs = [with_bar(s, profile, anchors) for s in specs]
    state.tasks.extend(bench.specs)
    state.notes += [f"benchmarks: {note}" for note in data.notes]
    if not bench.specs:
        state.notes.append(f"benchmarks: none to run (asked: {', '.join(options.selected)}; "
                           f"profile {profile.name!r} has {len(anchors)} published scores)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The reproduction check: one test per benchmark that has a published score."""
    if "quality_benchmark" in metafunc.fixturenames:
        bench = metafunc.config.stash[BENCH_KEY]
        specs = [s for s in bench.specs if s.anchor is not None]
        params = [pytest.param(s, id=s.name, marks=pytest.mark.mteb) for s in specs]
        if not params:
            why = ("no published score among the benchmarks asked for" if bench.options.selected
                   else "no MTEB benchmark asked for (--embedgate-benchmark)")
            params = [pytest.param(None, id=NOTHING_TO_REPRODUCE,
                                   marks=pytest.mark.skip(reason=f"nothing to reproduce: {why}"))]
        metafunc.parametrize("quality_benchmark", params)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With no benchmark asked for, the reproduction test is left out, not shown as a skip."""
    bench = config.stash.get(BENCH_KEY, None)
    if bench is None or bench.options.selected:
        return
    dropped = [i for i in items
               if getattr(i, "callspec", None) and i.callspec.id == NOTHING_TO_REPRODUCE]
    if dropped:
        items[:] = [i for i in items if i not in dropped]
        config.hook.pytest_deselected(items=dropped)


def limit_aware_encoder(config: pytest.Config, client: Any, server: Any, profile: ModelProfile,
                        settings: Any, progress: Any = None) -> LimitAwareEncoder:
    """The quality encoder, sending texts over the profile's max_tokens as --embedgate-truncation
    says (auto: the server's own truncation on vLLM, else the model's tokenizer, else fail)."""
    requested = config.stash[BENCH_KEY].options.truncation

    def tokenizer():
        return load_tokenizer(resolve_model_dir(profile, server_model=server.model,
                                                cli_model=settings.model,
                                                cache_dir=settings.cache_dir))
    try:
        mode, loaded, why = choose_mode(requested, backend=server.backend,
                                        token_ids=bool(profile.api_setting("token_ids")),
                                        tokenizer=tokenizer)
    except OverLimitError as exc:
        pytest.fail(f"embedgate: {exc}", pytrace=False)
    return LimitAwareEncoder(LimitedEmbed(client, mode=mode, max_tokens=profile.max_tokens,
                                          tokenizer=loaded, why=why), progress=progress)


def annotate(result: Any, task: Any, encoder: Any) -> None:
    """What quality.json and the failure messages say beyond the score: the benchmark's source
    and data check, its published anchor and verdict, and how many texts were truncated."""
    if isinstance(encoder, LimitAwareEncoder):
        entry = encoder.truncation(task.name)
        result.details["truncation"] = entry
        note = truncation_note(entry)
        if note:
            result.notes.append(note)
    if isinstance(task, BenchmarkSpec):
        result.details.update(task.details())
        if task.anchor is not None:
            result.details["published"] = task.anchor.check(result.score)


def is_benchmark(task: Any) -> bool:
    return isinstance(task, BenchmarkSpec)


__all__ = ["BENCH_KEY", "annotate", "is_benchmark", "limit_aware_encoder", "with_bar"]
