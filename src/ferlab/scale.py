"""Spreading independent training runs over Ray: the arms and seeds of an experiment today, on
this machine or a cluster.

Ray runs one program on a laptop or a cluster. ``ray_session(address)`` joins a running cluster
(``--address`` or ``RAY_ADDRESS``) or, by default, starts Ray inside this process on this machine,
so nothing needs setting up. ``run_tasks`` runs one job per set of arguments as a Ray task and
returns the results in the order of the arguments. Ray is an optional extra (``pip install
'ferlab[ray]'``); without it, ``--ray`` is one line saying how to install it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator

from ferlab.errors import FerlabError

INSTALL_HINT = "pip install 'ray[tune]>=2.9' (or ferlab[ray])"


def require_ray():
    try:
        import ray
    except ImportError:
        raise FerlabError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[object]:
    """Ray for the duration of the block: the cluster at ``address`` (or $RAY_ADDRESS), else a
    local Ray started here and stopped afterwards. An unreachable cluster is a FerlabError."""
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        target = address or os.environ.get("RAY_ADDRESS") or None
        check_reachable(target)
        try:
            ray.init(address=target, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except Exception as error:  # Ray raises ConnectionError, RuntimeError or ValueError, by version
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
            raise FerlabError(f"cannot join the Ray cluster at {target}: {first_line}") from None
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A host:port cluster address that answers a TCP connection within ``timeout`` seconds (Ray
    itself retries an unreachable address for minutes); ``auto``, ``local`` and ray:// URLs are
    left to Ray."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise FerlabError(f"Ray address {address!r}: expected host:port (e.g. 10.0.0.5:6379), 'auto' or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise FerlabError(f"cannot join the Ray cluster at {address}: {error.strerror or error}") from None


def _call(function: Callable, args: tuple, shared: tuple, threads: int):
    return function(*args, *shared, threads=threads)


def gpu_share() -> float:
    """The GPU a training task asks Ray for: a quarter (four small FER2013 runs share a card well;
    BENCHMARKS.md), none without CUDA. Ray hides the GPU from tasks that do not ask for one."""
    import torch

    return 0.25 if torch.cuda.is_available() else 0.0


def run_tasks(function: Callable, calls: list[tuple], *, shared: tuple = (), gpus: float = 0.0,
              done: Callable[[tuple, object], None] = lambda args, result: None) -> list:
    """``function(*args, *shared, threads=T)`` for each ``args`` of ``calls`` as a Ray task (one CPU
    and ``gpus`` of a GPU each; ``shared`` is put in Ray's object store once; ``T`` is this
    process's PyTorch thread count, so that each task computes as this process would). ``done``
    hears of each result as it arrives. A task that fails is reported after the others finish,
    naming its arguments' index."""
    import torch

    ray = require_ray()
    with ray_session() if not ray.is_initialized() else contextlib.nullcontext():
        remote = ray.remote(num_cpus=1, num_gpus=gpus)(_call)
        shared_ref = ray.put(shared)
        futures = {remote.remote(function, args, shared_ref, torch.get_num_threads()): i for i, args in enumerate(calls)}
        results, failures, pending = [None] * len(calls), [], list(futures)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            index = futures[ready[0]]
            try:
                results[index] = ray.get(ready[0])
                done(calls[index], results[index])
            except ray.exceptions.RayTaskError as error:
                cause = error.cause if getattr(error, "cause", None) is not None else error
                failures.append(f"task {index + 1}: {cause.__class__.__name__}: {str(cause).strip().splitlines()[0]}")
    if failures:
        raise FerlabError(f"{len(failures)} of {len(calls)} Ray tasks failed; {failures[0]}")
    return results
