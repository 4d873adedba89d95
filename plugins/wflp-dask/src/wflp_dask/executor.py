"""The "dask" executor: an operation's chunks as Dask tasks, on one of three clusters.

- default: a ``LocalCluster`` of ``num_python_subprocesses`` worker processes (one thread
  each), started when first needed and reused by every operation of this process, like
  wflp's own pool, and closed at exit;
- ``executor_options={"address": "tcp://host:8786"}``: the workers of a running scheduler;
- ``executor_options={"system": "NAME"}``: a dask-jobqueue cluster (SLURMCluster,
  PBSCluster, SGECluster by the system's scheduler) built from a system of
  ``wflp-systems.toml``, so the same systems serve queued jobs and Dask.

Each chunk runs through :func:`wflp.engine.worker.run_chunk` in a long-lived worker
process, so the operation's payload is unpickled, and a calculator given as a
constructor tuple built, once per worker and then kept. At most two tasks per worker
are out at a time (the input is read no further ahead), and results are yielded as
they finish: the engine orders them, and a chunk file, once written, survives a killed
driver. A task whose worker died is run again elsewhere (``retries``).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shlex
import threading
from collections.abc import Iterator
from typing import Any, Optional

from wflp.engine.chunks import ChunkResult, ChunkTask
from wflp.engine.executor import Executor
from wflp.errors import OperationError, ParameterError

log = logging.getLogger("wflp")

#: the dask-jobqueue cluster class of each wflp scheduler name
JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}
#: the header prefix each scheduler's job_extra_directives get from dask-jobqueue
HEADER_PREFIX = {"slurm": "#SBATCH", "pbs": "#PBS", "sge": "#$"}
#: memory per core of a jobqueue worker when neither resources nor the partition say
DEFAULT_MEMORY_MIB = 1024
#: seconds to wait for the first worker of a scheduler or a jobqueue cluster
DEFAULT_WORKER_TIMEOUT = 600.0

OPTIONS = ("address", "system", "shares_files", "retries", "workers", "resources",
           "cluster_options", "worker_timeout")


class DaskExecutor(Executor):
    """Runs chunks as Dask tasks (see the module docstring).

    address: a running scheduler ("tcp://host:8786") to join. system: a system of
    wflp-systems.toml whose scheduler starts dask-jobqueue workers (slurm, pbs, sge; a
    "local" system gives a LocalCluster). Neither: a LocalCluster on this machine.
    shares_files: whether the workers see this machine's files (then they read input
    frames and write chunk files themselves). Default True for a LocalCluster or a
    system on this machine, False for an address (results come back with each task).
    retries: times a task is run again after its worker died (default 3).
    workers: worker processes of a system's cluster (default num_python_subprocesses).
    resources: for a system, what each job asks for, as in RemoteInfo (num_cores: worker
    processes per job, max_time, max_memory per job, partition).
    cluster_options: extra keyword arguments for the cluster class (e.g.
    {"interface": "lo"}), over what wflp derives.
    worker_timeout: seconds to wait for the first worker (address, system).
    """

    name = "dask"
    in_process = False
    submits_batches = False

    def __init__(self, address: Optional[str] = None, system: Optional[str] = None,
                 shares_files: Optional[bool] = None, retries: int = 3,
                 workers: Optional[int] = None, resources: Optional[dict] = None,
                 cluster_options: Optional[dict] = None,
                 worker_timeout: float = DEFAULT_WORKER_TIMEOUT) -> None:
        where = "AutoparaInfo.executor_options"
        if address is not None and system is not None:
            raise ParameterError(f"{where}: give 'address' (a running scheduler) or "
                                 "'system' (start workers there), not both")
        if address is not None and (not isinstance(address, str) or "://" not in address):
            raise ParameterError(f"{where}: 'address' must be a scheduler address such as "
                                 f"'tcp://10.0.0.5:8786', got {address!r}")
        if system is not None and (not isinstance(system, str) or not system):
            raise ParameterError(f"{where}: 'system' must be the name of a system in "
                                 f"wflp-systems.toml, got {system!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ParameterError(f"{where}: 'retries' must be a whole number >= 0, got "
                                 f"{retries!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ParameterError(f"{where}: 'workers' must be a whole number >= 1, got "
                                 f"{workers!r}")
        if shares_files is not None and not isinstance(shares_files, bool):
            raise ParameterError(f"{where}: 'shares_files' must be True or False, got "
                                 f"{shares_files!r}")
        for key, value in (("resources", resources), ("cluster_options", cluster_options)):
            if value is not None and not isinstance(value, dict):
                raise ParameterError(f"{where}: {key!r} must be a dict, got "
                                     f"{type(value).__name__}")
        if (resources is not None or workers is not None) and system is None:
            raise ParameterError(f"{where}: 'resources' and 'workers' describe the jobs of a "
                                 "'system'; a LocalCluster has num_python_subprocesses "
                                 "workers, and an address has the workers it has")
        self.address, self.system, self.retries = address, system, retries
        self.workers, self.resources = workers, dict(resources or {})
        self.cluster_options = dict(cluster_options or {})
        self.worker_timeout = float(worker_timeout)
        self.shares_files = (address is None) if shares_files is None else shares_files

    # -- the protocol ------------------------------------------------------------------------
    def map_chunks(self, tasks: Iterator[ChunkTask], info: Any) -> Iterator[ChunkResult]:
        from distributed import as_completed

        if info.item_time_limit:
            log.warning("dask: AutoparaInfo.item_time_limit is not enforced on Dask workers "
                        "(tasks run in a worker thread, where signals cannot interrupt them)")
        client, n_workers = self._client(info)
        window = 2 * max(1, n_workers)  # bounded: the input is never read far ahead
        tries: dict[str, int] = {}
        chunk_of: dict[str, ChunkTask] = {}
        running = as_completed(loop=client.loop)
        pending = 0
        finished = False

        def submit(task: ChunkTask) -> None:
            future = client.submit(run_task, task, pure=False, retries=self.retries)
            chunk_of[future.key] = task
            running.add(future)

        try:
            task_iter = iter(tasks)
            exhausted = False
            while True:
                while not exhausted and pending < window:
                    task = next(task_iter, None)
                    if task is None:
                        exhausted = True
                        break
                    submit(task)
                    pending += 1
                if pending == 0:
                    break
                future = next(running)
                task = chunk_of.pop(future.key)
                if future.status == "error" and _worker_lost(future):
                    count = tries.get(task.start, 0) + 1  # type: ignore[call-overload]
                    if count <= self.retries:
                        tries[task.start] = count  # type: ignore[index]
                        log.info("dask: the worker running the chunk at item %d was lost; "
                                 "running it again (%d of %d)", task.start, count, self.retries)
                        submit(task)
                        continue
                    raise OperationError(
                        f"dask: the chunk starting at item {task.start} lost its worker "
                        f"{count} times ({future.exception()}); chunks finished before are "
                        "kept, so rerun to resume; if it recurs, run that item serially to "
                        "see why") from None
                pending -= 1
                yield future.result()
            finished = True
        finally:
            if not finished:
                for future in list(running.futures):
                    future.cancel()

    def chunk_size(self, info: Any) -> Optional[int]:
        return info.num_inputs_per_python_subprocess

    # -- the cluster -------------------------------------------------------------------------
    def _client(self, info: Any) -> tuple[Any, int]:
        """The Dask client of this executor's cluster, and how many workers it has."""
        threads = info.threads_per_worker
        if self.address is not None:
            key: tuple = ("address", self.address, threads)
            entry = _clusters.get(key, lambda: _connect(self.address, threads))
            client = entry.client
            client.wait_for_workers(1, timeout=self.worker_timeout)
            return client, len(client.scheduler_info().get("workers", {}))
        nproc = info.num_python_subprocesses or 1
        if self.system is None:
            key = ("local", nproc, threads)
            entry = _clusters.get(key, lambda: _local_cluster(nproc, threads))
            return entry.client, nproc
        workers = self.workers or nproc
        key = ("system", self.system, workers, threads, repr(sorted(self.resources.items())),
               repr(sorted(self.cluster_options.items())))
        entry = _clusters.get(key, lambda: _system_cluster(
            self.system, workers, threads, self.resources, self.cluster_options))
        entry.client.wait_for_workers(1, timeout=self.worker_timeout)
        return entry.client, workers


# -- what runs on a worker ----------------------------------------------------------------------


def run_task(task: ChunkTask) -> ChunkResult:
    """Run one chunk on a Dask worker: the same run_chunk as every executor's."""
    from wflp.engine.worker import run_chunk

    return run_chunk(task)


def _worker_lost(future: Any) -> bool:
    """True if the task failed because its worker died (not because it raised)."""
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    try:
        err = future.exception(timeout=0)
    except Exception:
        return False
    return isinstance(err, (KilledWorker, CommClosedError))


class _WorkerSetup:
    """A Dask worker plugin: numerical libraries pinned to *threads* threads, and (for a
    LocalCluster) a worker that outlives the driver, killed with SIGKILL, ends at once so
    that it cannot go on computing and writing."""

    name = "wflp-worker-setup"

    def __init__(self, threads: int, parent: Optional[int]) -> None:
        self.threads, self.parent = threads, parent

    def setup(self, worker: Any = None) -> None:
        value = str(self.threads)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
            os.environ[var] = value
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(self.threads)
        except ImportError:
            pass
        if self.parent is not None:
            _die_with(self.parent)

    def teardown(self, worker: Any = None) -> None:
        pass

    def transition(self, *args: Any, **kwargs: Any) -> None:
        pass


def _die_with(parent: int) -> None:
    """End this process as soon as *parent* (the driver) is gone."""
    import time

    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wflp-parent-watch", daemon=True).start()


# -- clusters, reused within the process ------------------------------------------------------

class _Entry:
    def __init__(self, client: Any, cluster: Any = None) -> None:
        self.client, self.cluster, self.pid = client, cluster, os.getpid()

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.client.status == "running"

    def close(self) -> None:
        if self.pid != os.getpid():
            return
        for thing in (self.client, self.cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception as err:  # closing at exit: say it, go on
                    log.debug("dask: closing %s: %s", type(thing).__name__, err)


class _Clusters:
    """The clusters and clients of this process, by what they were built from."""

    def __init__(self) -> None:
        self._entries: dict[tuple, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple, build: Any) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.alive():
                return entry
            if entry is not None:
                entry.close()
            # one cluster of a kind at a time: a LocalCluster of another size replaces it
            for other in [k for k in self._entries if k[0] == key[0] and k[0] != "address"]:
                self._entries.pop(other).close()
            entry = build()
            self._entries[key] = entry
            return entry

    def close_all(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.close()


_clusters = _Clusters()


def close_clusters() -> None:
    """Close the clusters and clients this process started (they start again when needed)."""
    _clusters.close_all()


atexit.register(close_clusters)


def _register_setup(client: Any, threads: int, parent: Optional[int]) -> None:
    from distributed.diagnostics.plugin import WorkerPlugin

    plugin_class = type("WflpWorkerSetup", (_WorkerSetup, WorkerPlugin), {})
    client.register_plugin(plugin_class(threads, parent), name=_WorkerSetup.name)


def _local_cluster(nproc: int, threads: int) -> _Entry:
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=nproc, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.WARNING)
    client = Client(cluster, set_as_default=False)
    _register_setup(client, threads, os.getpid())
    log.debug("dask: started a LocalCluster of %d worker processes", nproc)
    return _Entry(client, cluster)


def _connect(address: str, threads: int) -> _Entry:
    from distributed import Client

    try:
        client = Client(address, set_as_default=False, timeout=30)
    except OSError as err:
        raise OperationError(f"dask: cannot reach the scheduler at {address!r} "
                             f"(AutoparaInfo.executor_options['address']): {err}") from None
    _register_setup(client, threads, None)
    return _Entry(client)


def jobqueue_arguments(system: Any, workers: int, resources: Optional[dict],
                       cluster_options: Optional[dict]) -> tuple[str, dict, int]:
    """(cluster class name, keyword arguments, jobs to start) of the dask-jobqueue cluster
    for *system* (a wflp SystemConfig): each job runs ``num_cores`` single-threaded worker
    processes, with ``max_memory`` (default 1 GiB per core, or the partition's) and
    ``max_time``; the system's interpreter runs the workers, its ``commands`` start each
    job and its ``header`` lines are added to the job's header."""
    from wflp.remote.config import Resources, format_hms

    where = f"system {system.name!r} ({system.source})"
    cls_name = JOBQUEUE_CLUSTERS.get(system.scheduler)
    if cls_name is None:
        raise ParameterError(f"dask: {where} has scheduler {system.scheduler!r}; dask-jobqueue "
                             f"starts workers on {', '.join(sorted(JOBQUEUE_CLUSTERS))} (or "
                             "'local' for a LocalCluster)")
    if system.is_remote:
        raise ParameterError(
            f"dask: {where} is reached over SSH (host = {system.host!r}), but dask-jobqueue "
            "submits its worker jobs from this machine: run the driver on the cluster's "
            "login node, or start a scheduler there and pass executor_options={'address': "
            "...}")
    res = Resources.from_dict(resources, "AutoparaInfo.executor_options['resources']")
    system.check_resources(res, "AutoparaInfo.executor_options['resources']")
    part = system.partition(res.partition)
    memory = res.max_memory or (part.max_memory if part and part.max_memory else
                                DEFAULT_MEMORY_MIB * res.num_cores)
    max_time = res.max_time or (part.max_time if part else None)
    prefix = HEADER_PREFIX[system.scheduler]
    extra = []
    for line in system.header:
        text = line.strip()
        extra.append(text[len(prefix):].strip() if text.startswith(prefix) else text)
    kwargs: dict[str, Any] = {
        "cores": res.num_cores, "processes": res.num_cores, "memory": f"{memory}MiB",
        "python": system.interpreter, "job_extra_directives": extra,
        "job_script_prologue": list(system.commands), "name": f"wflp-dask-{system.name}",
    }
    if max_time:
        kwargs["walltime"] = format_hms(max_time)
    if res.partition:
        kwargs["queue"] = res.partition
    kwargs.update(cluster_options or {})
    jobs = math.ceil(workers / res.num_cores)
    return cls_name, kwargs, jobs


def _system_cluster(name: str, workers: int, threads: int, resources: dict,
                    cluster_options: dict) -> _Entry:
    from distributed import Client
    from wflp.remote.config import get_system

    system = get_system(name)
    if system.scheduler == "local" and not system.is_remote:
        return _local_cluster(min(workers, system.max_cores or workers), threads)
    cls_name, kwargs, jobs = jobqueue_arguments(system, workers, resources, cluster_options)
    import dask_jobqueue

    cls = getattr(dask_jobqueue, cls_name)
    if system.command_prefix:  # e.g. ["ip", "netns", "exec", "sge"] before qsub / qdel
        words = " ".join(shlex.quote(w) for w in system.command_prefix)
        job_cls = type(f"Prefixed{cls.job_cls.__name__}", (cls.job_cls,), {
            "submit_command": f"{words} {cls.job_cls.submit_command}",
            "cancel_command": f"{words} {cls.job_cls.cancel_command}"})
        cls = type(f"Prefixed{cls_name}", (cls,), {"job_cls": job_cls})
    cluster = cls(**kwargs)
    cluster.scale(jobs=jobs)
    client = Client(cluster, set_as_default=False)
    _register_setup(client, threads, None)
    log.info("dask: %s asked for %d job(s) of %d worker process(es) on system %r",
             cls_name, jobs, kwargs["processes"], name)
    return _Entry(client, cluster)


__all__ = ["DaskExecutor", "close_clusters", "jobqueue_arguments", "run_task"]
