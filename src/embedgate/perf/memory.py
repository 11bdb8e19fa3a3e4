"""Memory of the server while a scenario runs: a background sampler (every 20 ms by default).

Each tick reads the RSS of the server's process tree (cheap: /proc/PID/statm) and, with a GPU,
NVML's device and per-process used memory. PSS (shared pages split between the processes that map
them, so an API server and an engine core sharing torch are not counted twice) costs ~10 ms of
kernel time per large process, so it is read at the start, at the end and whenever the tree's RSS
reaches a new high (at most every 250 ms): the peak PSS is the PSS at the RSS peaks. The kernel's
per-process RSS high-water marks (VmHWM, reset at the start through /proc/PID/clear_refs) catch
spikes shorter than a tick.

Without a GPU the VRAM fields are None with a reason, never zero. The sampler also records how
much CPU other processes used meanwhile (``foreign_cpu_pct``), so a busy machine is visible.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from embedgate.serve.gpu import NvmlProbe
from embedgate.perf.stats import downsample_max

TREE_REFRESH_S = 1.0
PSS_MIN_INTERVAL_S = 0.25
PSS_NEW_HIGH = 1.01
TIMELINE_POINTS = 200


def _busy_s(times: Any) -> float:
    """Busy CPU seconds of the machine (psutil.cpu_times(); idle and iowait excluded)."""
    return sum(getattr(times, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))


class MachineLoad:
    """CPU other processes used while a scenario ran, in % of one core.

    Busy time of the whole machine minus the CPU of this process and its descendants (a launched
    server is one). On a shared machine a timing shift with high foreign load is the machine, not
    the server; the gate says so. An external server's CPU cannot be told apart: None then.
    """

    def __init__(self, tree: "ProcessTreeMemory", *,
                 busy: Callable[[], float] = lambda: _busy_s(psutil.cpu_times()),
                 own: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.tree = tree
        self._busy, self._own_now = busy, own or self._own
        self._clock = clock
        self._start: tuple[float, float, float] | None = None

    @staticmethod
    def _own() -> float:
        total = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        return total

    def start(self) -> None:
        self._start = (self._clock(), self._busy(), self._own_now())

    def stop(self) -> dict[str, Any]:
        if self.tree.root_pid is None:
            return {"foreign_cpu_pct": None, "machine_cpus": psutil.cpu_count(),
                    "foreign_cpu_null_reason": "external server: its CPU use cannot be told "
                                               "apart from other processes'"}
        if self._start is None:
            return {"foreign_cpu_pct": None}
        t0, busy0, own0 = self._start
        wall = self._clock() - t0
        foreign = (self._busy() - busy0) - (self._own_now() - own0)
        return {"foreign_cpu_pct": max(0.0, foreign / wall * 100.0) if wall > 0 else None,
                "machine_cpus": psutil.cpu_count()}


class ProcessTreeMemory:
    """RSS/PSS of a process and its descendants; children are re-listed every second.

    root: the root PID, None (nothing to measure: an external server), or a callable giving the
    PID once it exists (a server being launched). extra_roots: the other trees of a topology
    (its replicas, serve.fleet), summed with the root's.
    """

    def __init__(self, root: int | None | Callable[[], int | None], *,
                 include_children: bool = True, extra_roots: tuple[int, ...] = ()):
        self._root = root
        self.include_children = include_children
        self.extra_roots = tuple(extra_roots)
        self._procs: list[psutil.Process] = []
        self._listed_at = float("-inf")

    @property
    def root_pid(self) -> int | None:
        return self._root() if callable(self._root) else self._root

    def processes(self) -> list[psutil.Process]:
        now = time.monotonic()
        if now - self._listed_at >= TREE_REFRESH_S or not self._procs:
            pid = self.root_pid
            if pid is None:
                return []
            self._procs = []
            for root_pid in (pid, *self.extra_roots):
                try:
                    root = psutil.Process(root_pid)
                    self._procs += [root, *(root.children(recursive=True)
                                            if self.include_children else ())]
                except psutil.Error:
                    continue
            self._listed_at = now
        return self._procs

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes()]

    def rss(self) -> int | None:
        return self._sum(lambda p: p.memory_info().rss)

    def pss(self) -> int | None:
        return self._sum(lambda p: p.memory_full_info().pss)

    def _sum(self, read: Callable[[psutil.Process], int]) -> int | None:
        total, counted = 0, 0
        for proc in self.processes():
            try:
                total += read(proc)
                counted += 1
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except (psutil.AccessDenied, AttributeError):
                return None  # AttributeError: no pss on this platform
        return total if counted else None

    def reset_high_water_marks(self) -> str | None:
        """Reset each process's VmHWM (Linux >= 4.0); None when done, else why not."""
        for proc in self.processes():
            try:
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            except FileNotFoundError:
                continue  # the process is gone
            except OSError as exc:
                return f"cannot reset the kernel's peak RSS ({type(exc).__name__})"
        return None

    def high_water_mark_sum(self) -> int | None:
        total = 0
        for proc in self.processes():
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
            except FileNotFoundError:
                continue
            except (OSError, ValueError, IndexError):
                return None
        return total or None


@dataclass
class Timeline:
    t_s: list[float] = field(default_factory=list)
    rss: list[int | None] = field(default_factory=list)
    vram_device: list[int | None] = field(default_factory=list)
    vram_process: list[int | None] = field(default_factory=list)
    pss_t_s: list[float] = field(default_factory=list)
    pss: list[int] = field(default_factory=list)


def _peak(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _first(values: list[int | None]) -> int | None:
    return next((v for v in values if v is not None), None)


class MemorySampler:
    """``start()``, run the scenario, ``stop()`` -> the scenario's memory figures (a dict)."""

    def __init__(self, tree: ProcessTreeMemory, *, interval_s: float = 0.02,
                 gpu: NvmlProbe | None = None, gpu_reason: str | None = None,
                 pss_min_interval_s: float = PSS_MIN_INTERVAL_S):
        self.tree = tree
        self.interval_s = interval_s
        self.gpu = gpu
        self.gpu_reason = gpu_reason or (None if gpu else "no GPU measured")
        self.pss_min_interval_s = pss_min_interval_s
        self.timeline = Timeline()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._pss_rss = 0
        self._pss_at = float("-inf")
        self._hwm_reason: str | None = None
        self._cpu_s = 0.0
        self._error: BaseException | None = None
        self.load = MachineLoad(tree)

    def start(self) -> "MemorySampler":
        self._hwm_reason = self.tree.reset_high_water_marks()
        self.load.start()
        self._t0 = time.monotonic()
        self._tick(force_pss=True)
        self._thread = threading.Thread(target=self._loop, name="embedgate-memory-sampler",
                                        daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        try:
            while not self._stop.wait(self.interval_s):
                self._tick()
        except BaseException as exc:  # surfaced by stop(); a dead sampler must not go unnoticed
            self._error = exc
        self._cpu_s = time.thread_time() - cpu0

    def _tick(self, force_pss: bool = False) -> None:
        now = time.monotonic()
        tl = self.timeline
        rss = self.tree.rss()
        tl.t_s.append(now - self._t0)
        tl.rss.append(rss)
        if self.gpu is not None:
            sample = self.gpu.sample(self.tree.pids())
            tl.vram_device.append(sample.device_used_bytes)
            tl.vram_process.append(sample.process_used_bytes)
        new_high = rss is not None and rss > self._pss_rss * PSS_NEW_HIGH
        if force_pss or (new_high and now - self._pss_at >= self.pss_min_interval_s):
            pss = self.tree.pss()
            self._pss_at = time.monotonic()
            if pss is not None:
                self._pss_rss = max(self._pss_rss, rss or 0)
                tl.pss_t_s.append(now - self._t0)
                tl.pss.append(pss)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"memory sampler failed: {self._error!r}") from self._error
        self._tick(force_pss=True)
        return {**self.figures(), **self.load.stop()}

    def figures(self) -> dict[str, Any]:
        tl = self.timeline
        rss_known = [v for v in tl.rss if v is not None]
        out: dict[str, Any] = {
            "memory_interval_ms": self.interval_s * 1e3,
            "memory_samples": len(tl.t_s),
            "memory_sampler_cpu_ms": self._cpu_s * 1e3,
            "server_processes": len(self.tree.pids()),
            "start_rss_bytes": _first(tl.rss),
            "peak_rss_bytes": max(rss_known) if rss_known else None,
            "start_pss_bytes": tl.pss[0] if tl.pss else None,
            "peak_pss_bytes": max(tl.pss) if tl.pss else None,
            "peak_rss_hwm_sum_bytes": None if self._hwm_reason else self.tree.high_water_mark_sum(),
            "peak_rss_hwm_null_reason": self._hwm_reason,
        }
        if self.tree.root_pid is None:
            reason = "external server: its processes are not known to the kit"
            out.update(peak_rss_hwm_null_reason=reason, process_memory_null_reason=reason)
        out.update(self._vram_figures())
        out.update(self._headline(out))
        t_ds, rss_ds = downsample_max(tl.t_s, tl.rss, TIMELINE_POINTS)
        timeline: dict[str, Any] = {"t_s": t_ds, "rss_bytes": rss_ds,
                                    "pss_t_s": tl.pss_t_s, "pss_bytes": tl.pss}
        if self.gpu is not None:
            timeline["vram_device_bytes"] = downsample_max(tl.t_s, tl.vram_device,
                                                           TIMELINE_POINTS)[1]
            timeline["vram_process_bytes"] = downsample_max(tl.t_s, tl.vram_process,
                                                            TIMELINE_POINTS)[1]
            if len(tl.t_s) > TIMELINE_POINTS:
                timeline["vram_note"] = "bucket maxima; t_s is the time of each bucket's RSS max"
        out["memory_timeline"] = timeline
        return out

    def _vram_figures(self) -> dict[str, Any]:
        tl = self.timeline
        if self.gpu is None:
            return {"vram_start_device_bytes": None, "peak_vram_device_bytes": None,
                    "vram_start_process_bytes": None, "peak_vram_process_bytes": None,
                    "vram_null_reason": self.gpu_reason}
        out = {"vram_start_device_bytes": _first(tl.vram_device),
               "peak_vram_device_bytes": _peak(tl.vram_device),
               "vram_start_process_bytes": _first(tl.vram_process),
               "peak_vram_process_bytes": _peak(tl.vram_process),
               "vram_null_reason": None}
        if out["peak_vram_process_bytes"] is None:
            out["vram_process_null_reason"] = self.gpu.process_null_reason
        return out

    def _headline(self, out: dict[str, Any]) -> dict[str, Any]:
        """peak_memory_bytes: the one memory figure the gate compares by default, and its source."""
        if out.get("peak_vram_process_bytes") is not None:
            return {"peak_memory_bytes": out["peak_vram_process_bytes"],
                    "peak_memory_source": "nvml: GPU memory used by the server's processes"}
        if out.get("peak_pss_bytes") is not None:
            return {"peak_memory_bytes": out["peak_pss_bytes"],
                    "peak_memory_source": "psutil: PSS of the server's process tree (no GPU "
                                          "figure)" if self.gpu is None else
                                          "psutil: PSS of the server's process tree (NVML gave "
                                          "no per-process figure)"}
        return {"peak_memory_bytes": None, "peak_memory_source": None,
                "peak_memory_null_reason": out.get("process_memory_null_reason")
                or "no memory figure could be read"}
