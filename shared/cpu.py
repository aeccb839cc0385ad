"""What this machine's CPU computes natively, for choosing a numeric precision."""

from __future__ import annotations


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere oneDNN
    emulates it, which is slower than float32."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            flags = set(handle.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})
