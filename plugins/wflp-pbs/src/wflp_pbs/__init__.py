"""wflp plugin: the "pbs" and "pbspro" schedulers, the dialects of PBS (qsub, qstat, qdel):
"pbs" for Torque and the syntax every PBS shares, "pbspro" for PBS Pro / OpenPBS (select
chunks, and ``qstat -x -F json`` for finished jobs).

Discovering this plugin imports only this module; the dialects (wflp_pbs.scheduler) are
imported when a system with ``scheduler = "pbs"`` or ``"pbspro"`` is first used.
"""

from __future__ import annotations

from wflp import SchedulerSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_schedulers() -> list[SchedulerSpec]:
    return [
        SchedulerSpec(name="pbs",
                      summary="PBS/Torque: qsub, one qstat -f per poll, qdel "
                              "(-l nodes=N:ppn=C)",
                      factory="wflp_pbs.scheduler:PBSScheduler"),
        SchedulerSpec(name="pbspro",
                      summary="PBS Pro/OpenPBS: qsub, one qstat -x -f -F json per poll, "
                              "qdel (-l select=...)",
                      factory="wflp_pbs.scheduler:PBSProScheduler"),
    ]
