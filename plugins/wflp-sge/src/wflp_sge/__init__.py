"""wflp plugin: the "sge" scheduler, the dialect of Grid Engine (qsub, qstat, qacct, qdel).

Discovering this plugin imports only this module; the dialect (wflp_sge.scheduler) is
imported when a system with ``scheduler = "sge"`` is first used.
"""

from __future__ import annotations

from wflp import SchedulerSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_schedulers() -> list[SchedulerSpec]:
    return [
        SchedulerSpec(name="sge",
                      summary="Grid Engine: qsub -terse, one qstat -xml per poll, qacct, qdel",
                      factory="wflp_sge.scheduler:SGEScheduler"),
    ]
