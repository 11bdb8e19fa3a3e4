"""Open-loop arrival schedules: when each request is due, decided before any is sent.

A schedule is an array of offsets in seconds from the start of a run, the first at 0. It depends
only on its kind, rate, burstiness, seed and length, so two runs with the same arguments send at
the same offsets (`schedule_digest` says so in one string). Gaps between arrivals are drawn as
`vllm bench serve` draws them: gamma with shape = burstiness and mean 1/rate, so burstiness 1 is a
Poisson process, below 1 burstier, above 1 smoother; constant has no randomness; a trace replays
recorded timestamps, optionally rescaled to a target mean rate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

KINDS = ("poisson", "constant", "gamma", "trace")


class ArrivalError(ValueError):
    """An arrival spec or trace that cannot make a schedule; the message shows the grammar."""


@dataclass(frozen=True)
class Arrivals:
    """How requests arrive: ``kind`` at ``rate_rps`` (gamma: with ``burstiness``), seeded."""

    kind: str = "poisson"
    rate_rps: float = 1.0
    burstiness: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ArrivalError(f"arrival kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if not self.rate_rps > 0:
            raise ArrivalError(f"arrival rate must be > 0 requests/s, not {self.rate_rps!r}")
        if not self.burstiness > 0:
            raise ArrivalError(f"burstiness must be > 0 (1 = Poisson), not {self.burstiness!r}")

    def at(self, rate_rps: float, seed: int | None = None) -> "Arrivals":
        """The same process at another rate (and seed)."""
        return Arrivals(self.kind, rate_rps, self.burstiness, self.seed if seed is None else seed)

    def offsets(self, n: int, trace: Sequence[float] | None = None) -> np.ndarray:
        """`n` due times in seconds from the start, non-decreasing, the first at 0.

        trace: recorded timestamps (seconds) for kind "trace"; they are rescaled so their mean
        rate is ``rate_rps`` and cycled when shorter than `n`.
        """
        if n < 0:
            raise ArrivalError("a schedule needs n >= 0 requests")
        if n == 0:
            return np.zeros(0)
        if self.kind == "trace":
            return trace_offsets(trace if trace is not None else [], n, rate_rps=self.rate_rps)
        if self.kind == "constant":
            gaps = np.full(n - 1, 1.0 / self.rate_rps)
        else:
            shape = 1.0 if self.kind == "poisson" else self.burstiness
            rng = np.random.default_rng(self.seed)
            gaps = rng.gamma(shape, 1.0 / (self.rate_rps * shape), size=n - 1)
        return np.concatenate([[0.0], np.cumsum(gaps)])

    def describe(self) -> str:
        what = {"poisson": "Poisson", "constant": "constant",
                "gamma": f"gamma (burstiness {self.burstiness:g})",
                "trace": "trace replay"}[self.kind]
        return f"{what} arrivals at {self.rate_rps:g} req/s, seed {self.seed}"

    def as_dict(self) -> dict[str, object]:
        return {"arrival": self.kind, "arrival_rate_rps": self.rate_rps,
                "arrival_burstiness": self.burstiness, "arrival_seed": self.seed}


def parse_arrivals(text: str, *, rate_rps: float = 1.0, seed: int = 0) -> Arrivals:
    """``poisson``, ``constant``, ``gamma:B`` (B = burstiness) or ``trace``."""
    kind, _, arg = text.strip().partition(":")
    burstiness = 1.0
    if arg:
        if kind != "gamma":
            raise ArrivalError(f"arrivals {text!r}: only gamma takes a parameter (gamma:0.5)")
        try:
            burstiness = float(arg)
        except ValueError:
            raise ArrivalError(f"arrivals {text!r}: burstiness must be a number, e.g. gamma:0.5")
    elif kind == "gamma":
        raise ArrivalError(f"arrivals {text!r}: give the burstiness, e.g. gamma:0.5 "
                           f"(1 is Poisson, below 1 burstier)")
    return Arrivals(kind, rate_rps, burstiness, seed)


def trace_offsets(timestamps: Sequence[float], n: int, *, rate_rps: float | None = None,
                  ) -> np.ndarray:
    """Recorded timestamps as offsets from the first; rescaled to `rate_rps` when given; cycled
    (each cycle after the last, one mean gap later) when `n` exceeds the trace."""
    stamps = np.asarray(timestamps, dtype=float)
    if stamps.size < 2:
        raise ArrivalError("a trace needs at least 2 timestamps")
    if not np.all(np.isfinite(stamps)) or np.any(np.diff(stamps) < 0):
        raise ArrivalError("trace timestamps must be finite and non-decreasing")
    base = stamps - stamps[0]
    span = base[-1]
    if span <= 0:
        raise ArrivalError("trace timestamps all equal: no rate to replay")
    if rate_rps is not None:
        base = base * ((stamps.size - 1) / span) / rate_rps
        span = base[-1]
    period = span + span / (stamps.size - 1)
    cycles = -(-n // stamps.size)
    out = np.concatenate([base + k * period for k in range(cycles)])
    return out[:n]


def realized_rate(offsets: np.ndarray) -> float | None:
    """The rate a finite schedule actually offers: (n - 1) arrivals over its span."""
    if len(offsets) < 2 or offsets[-1] <= offsets[0]:
        return None
    return (len(offsets) - 1) / float(offsets[-1] - offsets[0])


def schedule_digest(offsets: np.ndarray) -> str:
    """sha256 of the offsets in whole microseconds: equal digests, same send times."""
    micros = np.rint(np.asarray(offsets, dtype=float) * 1e6).astype("<i8")
    return hashlib.sha256(micros.tobytes()).hexdigest()
