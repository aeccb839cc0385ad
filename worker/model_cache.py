"""ModelCache: the cascades one worker process holds, by version. The active version is read
from the registry before every chunk, so `skuai models activate V` takes effect between chunks
without a restart; a batch is pinned to the version its first chunk used, so it never mixes."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import redis

from shared import keys
from shared.redis_client import text
from training.precision import REDUCED_PRECISIONS, precision_allowed
from training.registry import Registry

if TYPE_CHECKING:
    from training.cascade import Cascade

log = logging.getLogger(__name__)
CAPACITY = 2  # the active version, and the one a batch still in flight was pinned to


class ModelCache:
    """Loads versions on demand and keeps the most recently used few."""

    def __init__(
        self,
        registry: Registry,
        conn: redis.Redis,
        *,
        precision: str = "auto",
        capacity: int = CAPACITY,
    ) -> None:
        self.registry = registry
        self.conn = conn
        self.precision = precision
        self.capacity = capacity
        self._loaded: OrderedDict[str, Cascade] = OrderedDict()
        self._gpus: list[str] = []
        self._lock = threading.Lock()

    @property
    def versions(self) -> list[str]:
        """Versions loaded in this process, least recently used first."""
        return list(self._loaded)

    def for_chunk(self, batch_id: str | None) -> Cascade:
        """The cascade a chunk must use: its batch's pinned version, else the active one."""
        active = self.registry.require_active()
        if batch_id is None:
            return self.get(active)
        batch_key = keys.batch(batch_id)
        self.conn.hsetnx(batch_key, "model_version", active)  # the first chunk pins the batch
        pinned = self.conn.hget(batch_key, "model_version")
        return self.get(text(pinned) if pinned is not None else active)

    def active(self) -> Cascade:
        """The active version's cascade (loaded at start so readiness is honest)."""
        return self.get(self.registry.require_active())

    def get(self, version: str) -> Cascade:
        """A loaded version, loading it (and dropping the least recently used) if needed."""
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
            cascade = self._load(version)
            self._loaded[version] = cascade
            while len(self._loaded) > self.capacity:
                dropped, _ = self._loaded.popitem(last=False)
                log.info("unloaded model %s", dropped)
            return cascade

    def _load(self, version: str) -> Cascade:
        from shared.cpu import cpu_has_bf16
        from training.cascade import Cascade
        from worker.devices import configure_devices

        if not self._loaded:
            self._gpus = configure_devices()
        folder = self.registry.path(version)
        precision = self.precision
        if precision == "auto":  # mixed precision where tensor cores make it pay
            precision = "fp16" if self._gpus else "fp32"
        if precision in REDUCED_PRECISIONS and not precision_allowed(folder, precision):
            log.warning(
                "%s has not passed the %s accuracy check (skuai models activate %s "
                "--precision %s); serving it in fp32",
                version,
                precision,
                version,
                precision,
            )
            precision = "fp32"
        if precision == "bf16" and not self._gpus and not cpu_has_bf16():
            log.warning("this CPU has no bfloat16 units (AVX-512 BF16, AMX): bf16 is emulated")
        cascade = Cascade.load(folder, version=version, precision=precision)
        cascade.warm_up()
        log.info(
            "loaded model %s in %s (%d models, %d SKUs)",
            version,
            cascade.precision,
            len(cascade.labels.models),
            len(cascade.labels.skus),
        )
        return cascade
