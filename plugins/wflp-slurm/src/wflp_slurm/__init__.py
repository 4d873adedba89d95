"""wflp plugin: the "slurm" scheduler, the dialect of Slurm (sbatch, squeue, sacct, scancel).

Discovering this plugin imports only this module; the dialect (wflp_slurm.scheduler) is
imported when a system with ``scheduler = "slurm"`` is first used.
"""

from __future__ import annotations

from wflp import SchedulerSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_schedulers() -> list[SchedulerSpec]:
    return [
        SchedulerSpec(name="slurm",
                      summary="Slurm: sbatch, one squeue -t all per poll, sacct, scancel",
                      factory="wflp_slurm.scheduler:SlurmScheduler"),
    ]
