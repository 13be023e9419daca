"""Time in the sandbox: dates are text ``YYYY-MM-DD HH:MM:SS``; the sites' "today" is a config value.

Generated data lies before ``today``; writes made during an episode are stamped ``today`` with the
wall clock's time of day, so they sort after all generated data while the date stays fixed.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta


def stamp(moment: datetime) -> str:
    """The text form of a moment in the databases."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def day_start(day: date) -> datetime:
    return datetime.combine(day, time())


def random_moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A whole second, uniformly in ``[start, end)``."""
    return start + timedelta(seconds=rng.randrange(max(1, int((end - start).total_seconds()))))


def now_stamp(today: date) -> str:
    """The stamp of a write made now: ``today`` at the wall clock's time of day."""
    return stamp(datetime.combine(today, datetime.now().time().replace(microsecond=0)))
