"""Data-parallel training in several processes: torch.distributed and DistributedDataParallel.

`train.nproc` > 1 makes the train stage start that many processes on this machine through
PyTorch's elastic launcher (what `torchrun` runs), rendezvous on 127.0.0.1. Launched by `torchrun`
itself (RANK and WORLD_SIZE set), the stage joins that group instead, on one or several machines.
NCCL on CUDA, gloo on the CPU.

`train.batch_size` stays the global batch: each process takes its own slice of every batch, DDP
averages the gradients, and so an epoch makes the same optimizer steps with the same batch size
and learning rate whatever `nproc` is.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from exigo.core.errors import ExigoError
from exigo.core.params import check_nproc, usable_cpus


@dataclass(frozen=True)
class Group:
    """This process's place in a process group."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that logs and writes outputs."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's part of a batch: every world-th item from its rank (a view; the whole
        batch in a single process)."""
        return batch[self.rank :: self.world]


SINGLE = Group()


def launched() -> bool:
    """Whether torchrun (or the elastic launcher) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join(device: torch.device) -> Group:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on the CPU)."""
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    else:  # the machine's cores shared out, not every process on all of them
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        torch.set_num_threads(max(1, usable_cpus() // local))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())


def leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(group: Group, *values: torch.Tensor) -> list[torch.Tensor]:
    """Each tensor summed over every process (the identity in a single process)."""
    if group.world == 1:
        return list(values)
    import torch.distributed as dist

    out = []
    for v in values:
        v = v.clone()
        dist.all_reduce(v)
        out.append(v)
    return out


def sync_buffers(model: torch.nn.Module, group: Group) -> None:
    """Rank 0's buffers (batch-norm running statistics) everywhere, so every process scores the
    model rank 0 saves."""
    if group.world == 1:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer, 0)


def wrap(model: torch.nn.Module, group: Group, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` when there are several processes."""
    if group.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def check_launch(nproc: int, device: torch.device) -> None:
    """Refuse `nproc` processes the device cannot run side by side: one GPU each on CUDA, one
    CPU core each everywhere."""
    if device.type == "mps":
        raise ExigoError("train.nproc: data-parallel training needs CUDA or the CPU, not mps")
    if device.type == "cuda":
        check_nproc(nproc, torch.cuda.device_count(), "GPU")
    check_nproc(nproc, usable_cpus(), "CPU core this process may use")


def launch(nproc: int, device: torch.device, entrypoint: Callable[..., Any], *args: Any) -> Any:
    """Run entrypoint(*args) in `nproc` local processes with PyTorch's elastic launcher; returns
    rank 0's result. A process that fails becomes one error line (its own message when it was an
    exigo error), never a wall of tracebacks."""
    check_launch(nproc, device)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed.elastic", "torch.multiprocessing"):  # their tracebacks: ours
        logging.getLogger(name).setLevel(logging.CRITICAL)  # is the one line below
    if device.type == "cpu":  # gloo talks over loopback, not the address the hostname has
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback())

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"exigo-train-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port on loopback: this machine only
        max_restarts=0,
        monitor_interval=0.2,
    )
    how = "NCCL, one GPU each" if device.type == "cuda" else "gloo on the CPU"
    print(f"train: starting {nproc} processes ({how})", flush=True)
    try:
        results = elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        message = failure.message
        if isinstance(message, dict):
            message = message.get("message", "")
        last = (str(message) or f"exit code {failure.exitcode}").strip().splitlines()[-1]
        last = last.removeprefix("exigo.core.errors.").removeprefix("ExigoError: ")
        raise ExigoError(f"train.nproc={nproc}: process {rank} failed: {last}") from None
    return results[0]


def _loopback() -> str:
    """The loopback interface's name (lo on Linux, lo0 on macOS)."""
    names = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    return min(names, key=len) if names else "lo"
