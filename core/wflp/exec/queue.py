"""The queue executor: an operation's inputs as queued jobs on a configured system.

Chosen by ``AutoparaInfo(remote_info=RemoteInfo(...))``. Each task it receives is a
batch of ``num_inputs_per_queued_job`` inputs (the engine cuts them so); each batch
becomes one job (wflp.remote.jobs) running wflp.engine.batch.run_batch with the
job's cores. Jobs are keyed by what they compute, so a driver run again after
being killed finds the jobs it submitted, submits nothing new, and collects them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import cloudpickle

from ..engine.chunks import ChunkResult, ChunkTask
from ..errors import JobsPending
from .base import Executor

log = logging.getLogger("wflp")


def _items_digest(items: list) -> str:
    from ase import Atoms

    from ..records import atoms_digest, canonical, canonical_json

    h = hashlib.sha256()
    for item in items:
        h.update((atoms_digest(item) if isinstance(item, Atoms)
                  else canonical_json(canonical(item))).encode())
    return h.hexdigest()


class QueueExecutor(Executor):
    """Runs batches of inputs as queued jobs (see the module docstring)."""

    name = "queue"
    submits_batches = True

    def __init__(self, remote_info: Any = None):
        self.remote_info = remote_info  # default: the run's AutoparaInfo.remote_info

    def _remote(self, info: Any) -> Any:
        remote = self.remote_info if self.remote_info is not None else info.remote_info
        if remote is None:
            from ..errors import ParameterError

            raise ParameterError("the queue executor needs a RemoteInfo: pass "
                                 "AutoparaInfo(remote_info=RemoteInfo(system=..., ...))")
        return remote.checked()

    def chunk_size(self, info: Any) -> int:
        """Each queued job takes a fixed number of inputs."""
        return self._remote(info).num_inputs_per_queued_job

    def map_chunks(self, tasks: Iterator[ChunkTask], info: Any) -> Iterator[ChunkResult]:
        """Submit each chunk as a queued job (a job already known is not submitted again),
        then wait and yield each job's chunk as it finishes; JobsPending without waiting when
        ``wait_for_results`` is False."""
        from ..engine.batch import run_batch
        from ..records import canonical_json, sha256_bytes
        from ..remote import manager
        from ..remote.config import Resources, get_system
        from ..remote.jobs import JobSpec, dumps_portable, job_name

        remote = self._remote(info)
        system = get_system(remote.system)
        resources = Resources.from_dict(remote.resources, "RemoteInfo.resources")
        system.check_resources(resources, "RemoteInfo.resources")
        nproc = info.num_python_subprocesses if (info.num_python_subprocesses or 1) > 1 \
            else resources.num_cores
        jobs = manager()
        submitted: dict[int, ChunkTask] = {}
        rows = []
        portable: dict[str, bytes] = {}
        for task in tasks:
            if task.digest not in portable:  # the user's functions travel by value
                portable[task.digest] = dumps_portable(cloudpickle.loads(task.payload))
            # the job runs in its own folder, with code it can load
            shipped = dataclasses.replace(task, cwd=None, payload=portable[task.digest])
            identity = {"payload": task.digest, "start": task.start, "end": task.end,
                        "group": task.group,
                        "stage": task.target.token if task.target is not None else None,
                        "items": _items_digest(task.items), "resources": resources.to_dict(),
                        "system": system.name, "nproc": nproc,
                        "where": [system.host, system.remote_root]}
            key = sha256_bytes(canonical_json(identity).encode())
            call = dumps_portable((run_batch, (shipped, nproc), {}))
            spec = JobSpec(key, job_name(f"{remote.job_name}-{task.start}", key), "batch",
                           system, resources, call, tuple(str(p) for p in remote.input_files))
            row = jobs.submit(spec, resubmit_failed=remote.resubmit_failed)
            submitted[row.id] = task
            rows.append(row)
        if not rows:
            return
        if not remote.wait_for_results:
            raise JobsPending(f"{len(rows)} queued job(s) on {system.name!r} submitted or "
                              "already known, not waited for (wait_for_results=False); rerun "
                              "to collect them, or see `wflp jobs ls`")
        log.info("waiting for %d queued job(s) on %s", len(rows), system.name)
        for row in jobs.wait(rows, remote.timeout_seconds(), remote.poll_interval):
            task = submitted[row.id]
            out = jobs.result(row)  # raises for a job that did not succeed
            if out.get("error") is not None:
                yield ChunkResult(task.start, task.locs, None, 0, error=out["error"],
                                  error_index=out.get("error_index"),
                                  skipped=out.get("skipped", []), group=task.group)
                continue
            if "results" in out:
                yield ChunkResult(task.start, task.locs, out["results"],
                                  sum(len(r) for r in out["results"]),
                                  skipped=out.get("skipped", []), group=task.group)
                continue
            files = [str(jobs.fetch_file(row, f"chunks/{name}")) for name in out["chunk_files"]]
            yield ChunkResult(task.start, task.locs, None, out["n_outputs"], chunk_files=files,
                              skipped=out.get("skipped", []), group=task.group)


__all__ = ["QueueExecutor"]
