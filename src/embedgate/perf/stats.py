"""Pure statistics for the perf suite: latency percentiles, round summaries, spread, downsampling.

pytest-benchmark keeps one duration per round and has no percentiles, so the figures that
published embedding comparisons show (P50/P90/P95/P99, max) are computed here from the kit's own
per-request timings. Percentiles use numpy's default linear interpolation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def latency_figures(latencies_s: Sequence[float],
                    prefix: str = "latency") -> dict[str, float | None]:
    """P50/P90/P95/P99, min, mean and max in milliseconds; all None for no samples."""
    keys = [f"{prefix}_p{p}_ms" for p in PERCENTILES] + [
        f"{prefix}_min_ms", f"{prefix}_mean_ms", f"{prefix}_max_ms"]
    data = np.asarray(latencies_s, dtype=float)
    if data.size == 0:
        return dict.fromkeys(keys)
    ms = data * 1e3
    values = [*np.percentile(ms, PERCENTILES), ms.min(), ms.mean(), ms.max()]
    return {k: float(v) for k, v in zip(keys, values)}


def median(values: Sequence[float]) -> float | None:
    clean = [v for v in values if v is not None]
    return float(np.median(clean)) if clean else None


def spread_pct(values: Sequence[float]) -> float | None:
    """(max - min) / median of per-round figures, in percent: the in-run repeatability."""
    clean = np.asarray([v for v in values if v is not None], dtype=float)
    if clean.size < 2:
        return None
    mid = float(np.median(clean))
    return float((clean.max() - clean.min()) / mid * 100.0) if mid > 0 else None


def round_figures(rounds_s: Sequence[Sequence[float]], walls_s: Sequence[float],
                  items: Sequence[int], tokens: Sequence[int | None]) -> dict[str, object]:
    """Per-round P50/P90/P95/P99 and throughput, their medians (what the gate compares) and spread.

    rounds_s: per-request latencies of each timed round; walls_s: each round's wall time;
    items: inputs embedded in each round; tokens: prompt tokens of each round (None: unknown).
    """
    out: dict[str, object] = {"rounds": len(rounds_s)}
    for p in PERCENTILES:
        per_round = [float(np.percentile(np.asarray(r) * 1e3, p)) if len(r) else None
                     for r in rounds_s]
        out[f"latency_p{p}_ms_rounds"] = per_round
        out[f"latency_p{p}_ms_round_median"] = median(per_round)
    out["latency_p95_ms_round_spread_pct"] = spread_pct(out["latency_p95_ms_rounds"])
    rps = [len(r) / w if w > 0 else None for r, w in zip(rounds_s, walls_s)]
    ips = [n / w if w > 0 else None for n, w in zip(items, walls_s)]
    out["throughput_rps_rounds"] = rps
    out["throughput_rps_round_median"] = median(rps)
    out["throughput_rps_round_spread_pct"] = spread_pct(rps)
    out["inputs_per_s_round_median"] = median(ips)
    if tokens and all(t is not None for t in tokens):
        tps = [t / w if w > 0 else None for t, w in zip(tokens, walls_s)]
        out["tokens_per_s_rounds"] = tps
        out["tokens_per_s_round_median"] = median(tps)
    else:
        out["tokens_per_s_rounds"] = None
        out["tokens_per_s_round_median"] = None
    out.update(round_cis(out, [f"latency_p{p}_ms" for p in PERCENTILES] + ["throughput_rps"]))
    return out


def downsample_max(times: Sequence[float], values: Sequence[float | None],
                   max_points: int) -> tuple[list[float], list[float | None]]:
    """At most max_points (time, value) pairs; each bucket keeps its largest value, so the peak
    of the full series is always in the downsampled one."""
    n = len(times)
    if n <= max_points:
        return [float(t) for t in times], [None if v is None else float(v) for v in values]
    edges = np.linspace(0, n, max_points + 1).astype(int)
    out_t: list[float] = []
    out_v: list[float | None] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        bucket = [(v, i) for i, v in enumerate(values[lo:hi], start=lo) if v is not None]
        if bucket:
            value, idx = max(bucket)
            out_t.append(float(times[idx]))
            out_v.append(float(value))
        else:
            out_t.append(float(times[lo]))
            out_v.append(None)
    return out_t, out_v


def quantile_ci(values: Sequence[float], q: float, confidence: float = 0.95, *,
                clip: bool = False) -> tuple[float | None, float | None, float | None]:
    """Distribution-free CI for the q-quantile: order statistics whose ranks come from the
    binomial (no normality, no resampling). Returns (low, high, exact coverage). A side the
    sample is too small to bound at `confidence` is None (the P95 of 20 values has no upper
    bound at 95%); with clip=True it is the extreme value instead and the coverage says how much
    less than `confidence` the interval holds (5 rounds: [min, max] covers the median 93.75%).
    """
    from scipy.stats import binom

    x = np.sort(np.asarray([v for v in values if v is not None], dtype=float))
    n = x.size
    if n == 0 or not 0 < q < 1:
        return None, None, None
    alpha = 1.0 - confidence
    lo_rank = int(binom.ppf(alpha / 2, n, q))          # 1-based rank of the lower bound
    hi_rank = int(binom.ppf(1 - alpha / 2, n, q)) + 1  # 1-based rank of the upper bound
    if clip:
        lo_rank, hi_rank = max(lo_rank, 1), min(hi_rank, n)
    low = float(x[lo_rank - 1]) if lo_rank >= 1 else None
    high = float(x[hi_rank - 1]) if hi_rank <= n else None
    level = float(binom.cdf(hi_rank - 1, n, q) - binom.cdf(lo_rank - 1, n, q))
    return low, high, level


def round_cis(out: dict[str, object], names: Sequence[str]) -> dict[str, object]:
    """For each ``NAME_rounds`` list in `out`: the CI of its round median (``NAME_round_ci``,
    [low, high], distribution-free) and the CI's exact coverage (``round_ci_level``)."""
    extra: dict[str, object] = {}
    for name in names:
        values = out.get(f"{name}_rounds")
        if not values:
            continue
        low, high, level = quantile_ci(values, 0.5, clip=True)
        extra[f"{name}_round_ci"] = [low, high]
        extra["round_ci_level"] = level
    return extra
