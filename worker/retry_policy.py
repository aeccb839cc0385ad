"""RetryPolicy: when a task retries a SkuaiError. `retryable` decides whether (shared/errors.py);
this decides when, and for how long before the error is taken as final."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidArgument, SkuaiError


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after `first_delay` s, doubling up to `max_delay` s, until `give_up_after` s of
    waiting have passed."""

    give_up_after: float
    first_delay: float = 1.0
    max_delay: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.first_delay <= self.max_delay:
            raise InvalidArgument("the delays must satisfy 0 < first_delay <= max_delay")

    def delay(self, error: SkuaiError, retries: int) -> float | None:
        """Seconds until the next try after `retries` retries, or None: fail with `error` now."""
        if not error.retryable or self.waited(retries) >= self.give_up_after:
            return None
        return self._step(retries)

    def waited(self, retries: int) -> float:
        """Seconds spent waiting by the first `retries` retries."""
        doubling = min(retries, self._doublings())
        ramp = sum(self._step(n) for n in range(doubling))
        return ramp + (retries - doubling) * self.max_delay

    def _step(self, retry: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2 ** min(retry, self._doublings())))

    def _doublings(self) -> int:
        """Retries before the delay reaches `max_delay`."""
        count = 0
        while self.first_delay * 2**count < self.max_delay:
            count += 1
        return count
