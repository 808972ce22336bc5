"""How much CPU time a hypervisor took from this machine while a measurement ran: Linux's ``steal`` time.

On a virtual machine the host may run other guests on the physical cores
behind this one's virtual CPUs; the time a virtual CPU wanted to run and
could not is counted as *steal* in ``/proc/stat``. Where it is high, every
timing (the floor's probes and the epochs alike) is slowed by a share that
changes from second to second, and a ratio of two timings taken a minute
apart is not a property of the code. On this project's Intel Xeon KVM
machine the hypervisor took 14% of a busy virtual CPU's time while the FMA
probe ran (its ten repeats read 57-134 GFLOP/s) and under 1% while it
idled.

:class:`StealMeter` measures the share over a block::

    with StealMeter() as meter:
        ...                      # the measurement
    meter.share                  # stolen / (stolen + busy) CPU time, or NaN

``busy`` is the time the CPUs spent running anything (user, nice, system,
irq, softirq), summed over all CPUs, as ``stolen`` is: the share is of the
CPU time that was wanted, not of the wall time. The counters move in clock
ticks (10 ms at the usual ``USER_HZ`` of 100), so a block of a few ticks
reads coarsely and one shorter than a tick may read NaN. Where there is no
``/proc/stat`` (not Linux) the share is NaN, which the reports show as
"not measured".
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

#: The aggregate CPU line of /proc/stat, in clock ticks (``man 5 proc``).
PROC_STAT = "/proc/stat"
FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")
#: A measurement with more steal than this is flagged in the reports.
STEAL_WARNING = 0.05


def cpu_times(path=PROC_STAT) -> dict | None:
    """The ``cpu`` line of ``path`` as ticks per field of :data:`FIELDS`; None where it cannot be read.

    Kernels before 2.6.11 have no steal column: it reads as 0 there.
    """
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == "cpu":
                    values = [int(v) for v in parts[1:len(FIELDS) + 1]]
                    values += [0] * (len(FIELDS) - len(values))
                    return dict(zip(FIELDS, values))
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class Steal:
    """CPU ticks stolen and busy between two readings of /proc/stat."""

    stolen: int
    busy: int

    @property
    def share(self) -> float:
        """``stolen / (stolen + busy)``; NaN when no CPU time passed (nothing to share)."""
        total = self.stolen + self.busy
        return self.stolen / total if total > 0 else math.nan


def steal_between(before: dict | None, after: dict | None) -> Steal | None:
    """The steal between two :func:`cpu_times` readings (None if either is missing)."""
    if before is None or after is None:
        return None
    busy = sum(after[f] - before[f] for f in BUSY_FIELDS)
    return Steal(stolen=after["steal"] - before["steal"], busy=busy)


class StealMeter:
    """A context manager: the steal share of the CPU time used while its block ran (see the module docstring)."""

    def __init__(self, path=PROC_STAT):
        self.path = path
        self.steal: Steal | None = None
        self._before: dict | None = None

    def __enter__(self) -> "StealMeter":
        self._before = cpu_times(self.path)
        return self

    def __exit__(self, *exc) -> None:
        self.steal = steal_between(self._before, cpu_times(self.path))

    @property
    def share(self) -> float:
        """The stolen share (0 to 1), or NaN when not measured (no /proc/stat, block still running)."""
        return self.steal.share if self.steal is not None else math.nan


def steal_warning(shares, where: str = "") -> str | None:
    """A sentence for a report when the highest of ``shares`` is over :data:`STEAL_WARNING`, else None."""
    measured = [s for s in shares if s == s]
    if not measured or max(measured) <= STEAL_WARNING:
        return None
    median = f"; median {statistics.median(measured):.0%}" if len(measured) > 1 else ""
    return (f"The hypervisor took up to {max(measured):.0%} of the CPU time{where} (`steal` in /proc/stat"
            f"{median}): timings on this machine move with its neighbours, and a ratio of two of them is only "
            "as steady as the steal during both.")
