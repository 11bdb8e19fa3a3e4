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

# A parent holding 60 MiB with a child holding 40 MiB; on "spike" the parent adds 150 MiB for
# 0.4 s; both block on stdin otherwise.
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
            spike = bytearray(150 * 2**20)
            time.sleep(0.4)
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


def test_sampler_catches_a_short_spike_and_labels_the_figures(tree):
    sampler = MemorySampler(ProcessTreeMemory(tree.pid), interval_s=0.02).start()
    tree.stdin.write("spike\n")
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
    assert out["memory_samples"] >= 15 and out["memory_interval_ms"] == 20
    assert out["server_processes"] == 2


def test_sampler_without_gpu_has_null_vram_with_a_reason(tree):
    out = MemorySampler(ProcessTreeMemory(tree.pid), interval_s=0.01,
                        gpu_reason="NVML is not available").start().stop()
    for key in ("peak_vram_device_bytes", "peak_vram_process_bytes", "vram_start_device_bytes"):
        assert out[key] is None
    assert out["vram_null_reason"] == "NVML is not available"


def test_sampler_timeline_is_downsampled_with_its_peak(tree):
    sampler = MemorySampler(ProcessTreeMemory(tree.pid), interval_s=0.001).start()
    time.sleep(0.5)
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


def test_sampler_measures_cpu_other_processes_used(tree):
    """A busy process outside this session's process tree shows as foreign load (~one core);
    the shell exits at once, so the spinner is reparented away from pytest."""
    shell = subprocess.run(["sh", "-c", f"'{sys.executable}' -c 'while True: pass' "
                                        f">/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, check=True)
    spinner = psutil.Process(int(shell.stdout))
    try:
        assert spinner not in psutil.Process().children(recursive=True)
        time.sleep(0.2)
        sampler = MemorySampler(ProcessTreeMemory(tree.pid), interval_s=0.02).start()
        time.sleep(1.0)
        out = sampler.stop()
    finally:
        spinner.kill()
    assert out["foreign_cpu_pct"] > 50 and out["machine_cpus"] >= 1


def test_machine_load_counts_this_sessions_children_as_its_own():
    """CPU of the pytest process's own descendants (a launched server) is not foreign load.
    Checked on the own-CPU meter itself, so other jobs on the machine cannot flake it."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        before = MachineLoad._own()
        time.sleep(1.0)
        own = MachineLoad._own() - before
    finally:
        spinner.kill()
        spinner.wait()
    assert own > 0.7  # the child's ~1 CPU-second
