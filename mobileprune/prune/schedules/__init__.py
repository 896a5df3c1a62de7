"""When channels are removed: one module per schedule, registered in `SCHEDULES`."""

from .base import SCHEDULES, Schedule, ScheduleContext

__all__ = ["SCHEDULES", "Schedule", "ScheduleContext"]
