"""GPU memory through NVML (issue 5, Memory), on a fake pynvml: device and per-process used
memory, GPU name and driver, the server's memory fraction; null with a reason, never a fake 0."""

from types import SimpleNamespace

import pytest

from embedgate.perf.memory import MemorySampler, ProcessTreeMemory
from embedgate.serve.gpu import NvmlProbe, memory_fraction

GIB = 2**30


class FakeNVML:
    """The subset of nvidia-ml-py the kit calls, with scripted devices and processes."""

    class NVMLError(Exception):
        pass

    def __init__(self, devices=(), init_error=None):
        # devices: [{"name": bytes|str, "total": int, "used": int, "procs": [(pid, bytes|None)]}]
        self.devices = [dict(d) for d in devices]
        self.init_error = init_error
        self.shutdowns = 0

    def nvmlInit(self):
        if self.init_error:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.devices[h]["name"]

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetMemoryInfo(self, h):
        d = self.devices[h]
        return SimpleNamespace(total=d["total"], used=d["used"], free=d["total"] - d["used"])

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.devices[h]["procs"]]


def h100(used, procs):
    return {"name": b"NVIDIA H100 80GB HBM3", "total": 80 * GIB, "used": used, "procs": procs}


def test_nvml_missing_driver_gives_no_probe_and_a_reason():
    probe, reason = NvmlProbe.open(FakeNVML(init_error="Driver Not Loaded"))
    assert probe is None and "NVML is not available (Driver Not Loaded)" in reason


def test_nvml_without_gpus_gives_a_reason_and_shuts_down():
    fake = FakeNVML([])
    probe, reason = NvmlProbe.open(fake)
    assert probe is None and reason == "NVML sees no GPU" and fake.shutdowns == 1


def test_nvml_counts_only_the_server_pids_memory_on_their_device():
    fake = FakeNVML([h100(10 * GIB, [(999, 9 * GIB)]),                    # someone else's GPU
                     h100(30 * GIB, [(101, 20 * GIB), (102, 4 * GIB), (555, 5 * GIB)])])
    probe, _ = NvmlProbe.open(fake)
    sample = probe.sample([101, 102])
    assert sample.process_used_bytes == 24 * GIB
    assert sample.device_used_bytes == 30 * GIB      # device 1 only: where the server runs
    assert probe.measured_devices() == [1]
    info = probe.info()
    assert info == {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "gpu_indices": [1],
                    "gpu_driver": "550.54.15", "gpu_memory_total_bytes": 80 * GIB}


def test_nvml_server_not_listed_gives_device_memory_and_a_process_reason():
    probe, _ = NvmlProbe.open(FakeNVML([h100(30 * GIB, [(555, 5 * GIB)])]))
    sample = probe.sample([101])
    assert sample.device_used_bytes == 30 * GIB and sample.process_used_bytes is None
    assert "NVML lists no process of the server" in probe.process_null_reason


def test_nvml_per_process_memory_unavailable_is_null_not_zero():
    probe, _ = NvmlProbe.open(FakeNVML([h100(30 * GIB, [(101, None)])]))
    assert probe.sample([101]).process_used_bytes is None
    assert "does not report per-process memory" in probe.process_null_reason


def test_nvml_str_names_from_newer_bindings_are_kept():
    probe, _ = NvmlProbe.open(FakeNVML([{**h100(0, []), "name": "NVIDIA H200"}]))
    assert probe.info()["gpu_name"] == "NVIDIA H200"


def test_sampler_with_gpu_reports_static_and_peak_vram_and_uses_it_as_peak_memory(monkeypatch):
    fake = FakeNVML([h100(30 * GIB, [(4242, 20 * GIB)])])
    probe, _ = NvmlProbe.open(fake)
    tree = ProcessTreeMemory(None)
    monkeypatch.setattr(tree, "pids", lambda: [4242])
    sampler = MemorySampler(tree, interval_s=0.005, gpu=probe).start()
    fake.devices[0].update(used=34 * GIB, procs=[(4242, 24 * GIB)])  # a scenario allocates
    import time
    time.sleep(0.05)
    fake.devices[0].update(used=31 * GIB, procs=[(4242, 21 * GIB)])
    out = sampler.stop()
    assert out["vram_start_process_bytes"] == 20 * GIB
    assert out["peak_vram_process_bytes"] == 24 * GIB
    assert out["peak_vram_device_bytes"] == 34 * GIB
    assert out["vram_null_reason"] is None
    assert out["peak_memory_bytes"] == 24 * GIB
    assert out["peak_memory_source"] == "nvml: GPU memory used by the server's processes"
    assert len(out["memory_timeline"]["vram_process_bytes"]) == len(out["memory_timeline"]["t_s"])


@pytest.mark.parametrize("command, value", [
    (["--mem-fraction-static", "0.3"], 0.3),
    (["--mem-fraction-static=0.3", "--mem-fraction-static", "0.5"], 0.5),  # last one wins
])
def test_memory_fraction_reads_sglang_flag(command, value):
    out = memory_fraction("sglang", ["python", "-m", "sglang.launch_server", *command], on_gpu=True)
    assert out["server_memory_fraction"] == value
    assert out["server_memory_fraction_flag"] == "--mem-fraction-static"


def test_memory_fraction_vllm_on_cpu_says_it_is_ram():
    out = memory_fraction("vllm", ["--gpu-memory-utilization", "0.1"], on_gpu=False)
    assert out["server_memory_fraction"] == 0.1
    assert "RAM" in out["server_memory_fraction_note"]


def test_memory_fraction_unset_or_not_applicable_is_null_with_a_note():
    assert "engine's default" in memory_fraction("vllm", [], on_gpu=True)[
        "server_memory_fraction_note"]
    for backend in ("hf", "external"):
        out = memory_fraction(backend, [], on_gpu=True)
        assert out["server_memory_fraction"] is None and out["server_memory_fraction_note"]
