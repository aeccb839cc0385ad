"""What this machine's CPU computes natively, for choosing a numeric precision."""

from __future__ import annotations


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere oneDNN
    emulates it, which is slower than float32."""
    return bool(_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def cpu_has_int8(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has int8 dot-product units (AVX-512 VNNI, AVX-VNNI or AMX), which ONNX
    Runtime's quantized kernels use; without them int8 gains little or nothing."""
    return bool(_flags(cpuinfo) & {"avx512_vnni", "avx_vnni", "amx_int8"})


def native_precisions(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
    """The inference precisions this CPU runs natively: fp32 always, then bf16 and int8."""
    return (
        "fp32",
        *(["bf16"] if cpu_has_bf16(cpuinfo) else []),
        *(["int8"] if cpu_has_int8(cpuinfo) else []),
    )


def _flags(cpuinfo: str) -> set[str]:
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            return set(handle.read().split())
    except OSError:
        return set()
