"""The engine's one clock: the wall clock, or the wall clock moved to the instant a tick ran at.

`dispatch --once --now …` runs a tick at a chosen instant; the batches it releases must read
the same day, or a ValidityPeriod or a window re-check would follow today's wall clock instead.
So a tick hands its batches the offset between its instant and the wall clock, and the batch's
clock runs on from there at real speed: a worker that takes the batch up late sees it late, and
in production (offset zero) the clock is simply the wall clock.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone


@dataclass(frozen=True)
class Clock:
    """The wall clock moved by a fixed offset (zero: the wall clock itself)."""

    offset: timedelta = timedelta(0)

    @classmethod
    def at(cls, instant: datetime | None) -> "Clock":
        """A clock that shows `instant` now and runs on at real speed; the wall clock for None."""
        return cls() if instant is None else cls(instant - timezone.now())

    @classmethod
    def from_seconds(cls, offset_seconds: float) -> "Clock":
        """The clock a task was handed as its offset in seconds."""
        return cls(timedelta(seconds=offset_seconds))

    @property
    def offset_seconds(self) -> float:
        return self.offset.total_seconds()

    def now(self) -> datetime:
        return timezone.now() + self.offset
