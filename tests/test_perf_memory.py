"""Process-tree memory without a GPU (issue 5, Memory): RSS and PSS of the server's tree,
sampled while a scenario runs, labelled as such, with VRAM null and a reason."""

import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from embedgate.perf.memory import MachineLoad, MemorySampler, ProcessTreeMemory

MIB = 2**20

# A parent holding 60 MiB with a child holding 40 MiB; on "spike" the parent adds 150 MiB until
# told "release"; both block on stdin otherwise.
TREE = textwrap.dedent("""
    import subprocess, sys, time
    hold = bytearray(60 * 2**20)
    child = subprocess.Popen([sys.executable, "-c",
        "import sys; b = bytearray(40 * 2**20); print('ok', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    child.stdout.readline()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "spike":
            spike = b"x" * (150 * 2**20)
            print("spiked", flush=True)
        elif line.strip() == "release":
            del spike
            print("done", flush=True)
    child.kill()
""")


@pytest.fixture
def tree():
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()
    for child in psutil.Process().children(recursive=True):
        if child.pid != proc.pid and "bytearray(40" in " ".join(child.cmdline()):
            child.kill()


def test_tree_memory_counts_the_children(tree):
    mem = ProcessTreeMemory(tree.pid)
    assert len(mem.pids()) == 2
    assert mem.rss() > 100 * MIB
    assert 90 * MIB < mem.pss() <= mem.rss()


def test_sampler_catches_a_spike_and_labels_the_figures(tree):
    sampler = MemorySampler(ProcessTreeMemory(tree.pid), interval_s=0.02).start()
    tree.stdin.write("spike\n")
    tree.stdin.flush()
    assert tree.stdout.readline().strip() == "spiked"
    for _ in range(3000):  # the spike lasts until the sampler has read it (RSS, then PSS at
        tl = sampler.timeline  # the new high, at most every 0.25 s): no race with a clock
        rss_seen = max(v for v in tl.rss if v) > tl.rss[0] + 120 * MIB
        if rss_seen and max(tl.pss) > tl.pss[0] + 120 * MIB:
            break
        time.sleep(0.01)
    tree.stdin.write("release\n")
    tree.stdin.flush()
    assert tree.stdout.readline().strip() == "done"
    out = sampler.stop()
    assert out["peak_rss_bytes"] - out["start_rss_bytes"] > 120 * MIB
    assert out["peak_pss_bytes"] - out["start_pss_bytes"] > 120 * MIB  # PSS read at the new high
    # The kernel's high-water marks see the spike too (its RSS counters are batched per CPU,
    # so the two can differ by a few hundred KiB).
    assert out["peak_rss_hwm_sum_bytes"] >= out["peak_rss_bytes"] - 2 * MIB
    assert out["peak_memory_bytes"] == out["peak_pss_bytes"]
    assert out["peak_memory_source"].startswith("psutil: PSS of the server's process tree")
    assert out["memory_samples"] >= 3 and out["memory_interval_ms"] == 20
    assert out["server_processes"] == 2


def test_sampler_without_gpu_has_null_vram_with_a_reason(tree):
    out = MemorySampler(ProcessTreeMemory(tree.pid), interval_s=0.01,
                        gpu_reason="NVML is not available").start().stop()
    for key in ("peak_vram_device_bytes", "peak_vram_process_bytes", "vram_start_device_bytes"):
        assert out[key] is None
    assert out["vram_null_reason"] == "NVML is not available"


def test_sampler_timeline_is_downsampled_with_its_peak(tree):
    sampler = MemorySampler(ProcessTreeMemory(tree.pid), interval_s=3600).start()
    for _ in range(500):  # the ticks a long scenario would take, without waiting for them
        sampler._tick()
    out = sampler.stop()
    timeline = out["memory_timeline"]
    assert out["memory_samples"] > 200
    assert len(timeline["t_s"]) == len(timeline["rss_bytes"]) <= 200
    assert max(timeline["rss_bytes"]) == out["peak_rss_bytes"]


def test_sampler_on_an_external_server_reports_nulls_with_reasons():
    out = MemorySampler(ProcessTreeMemory(None), interval_s=0.01).start().stop()
    assert out["peak_memory_bytes"] is None and out["peak_rss_bytes"] is None
    assert "external server" in out["peak_memory_null_reason"]
    # its CPU would count as "other processes": no busy-machine figure rather than a wrong one
    assert out["foreign_cpu_pct"] is None and "external" in out["foreign_cpu_null_reason"]


def test_tree_follows_a_root_that_appears_later(tree):
    pid = {"value": None}
    mem = ProcessTreeMemory(lambda: pid["value"])
    assert mem.pids() == [] and mem.rss() is None
    pid["value"] = tree.pid
    assert len(mem.pids()) == 2


class Counter:
    """A CPU-seconds or wall-clock reading the test advances by hand."""

    def __init__(self):
        self.value = 0.0

    def __call__(self):
        return self.value


def test_machine_load_is_busy_cpu_minus_the_sessions_own_over_wall_time(tree):
    busy, own, clock = Counter(), Counter(), Counter()
    load = MachineLoad(ProcessTreeMemory(tree.pid), busy=busy, own=own, clock=clock)
    load.start()
    busy.value, own.value, clock.value = 1.5, 0.5, 2.0  # 1.5 CPU-s busy, 0.5 of them ours
    out = load.stop()
    assert out["foreign_cpu_pct"] == pytest.approx(50.0)
    own.value = 3.0  # our own meter cannot make the foreign share negative
    assert load.stop()["foreign_cpu_pct"] == 0.0


def test_machine_load_counts_this_sessions_children_as_its_own():
    """The own-CPU meter includes the CPU of this process's descendants (a launched server), so
    a busy server is not foreign load. Checked against the child's own counter, never a clock."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        child = psutil.Process(spinner.pid)
        used = 0.0
        for _ in range(10_000):  # until the child has run a little; no time window asserted
            times = child.cpu_times()
            used = times.user + times.system
            if used >= 0.05:
                break
            time.sleep(0.01)
        mine = psutil.Process().cpu_times()
        # the same counters summed in another order: allow the float rounding, nothing more
        assert MachineLoad._own() >= used + mine.user + mine.system - 1e-9
    finally:
        spinner.kill()
        spinner.wait()


def test_machine_load_reads_busy_time_from_the_kernels_counters():
    fields = psutil.cpu_times()
    assert 0 < sum(getattr(fields, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
