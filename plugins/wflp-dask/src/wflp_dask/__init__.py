"""wflp plugin: the "dask" executor, chunks of an operation as Dask tasks.

Discovering this plugin imports only this module; dask and distributed are imported when
the executor is first built (``AutoparaInfo(executor="dask")``).
"""

from __future__ import annotations

from wflp import ExecutorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_executors() -> list[ExecutorSpec]:
    return [
        ExecutorSpec(name="dask",
                     summary="chunks as Dask tasks: a LocalCluster, a scheduler's address, "
                             "or dask-jobqueue workers from a wflp system",
                     factory="wflp_dask.executor:DaskExecutor"),
    ]
