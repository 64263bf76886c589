"""Devices and hosts: the data mesh, replicated placement, and jax.distributed start-up."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
SETTINGS_AXIS = "settings"


@dataclasses.dataclass(frozen=True)
class DeviceEnv:
    """Where a run executes: the mesh over its devices and this process's role."""

    mesh: jax.sharding.Mesh | None  # None: a single device, nothing is sharded
    process_index: int = 0
    process_count: int = 1

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    @property
    def is_lead(self) -> bool:
        """Only process 0 writes checkpoints, metrics and plots."""
        return self.process_index == 0

    @property
    def batch_sharding(self):
        return None if self.mesh is None else NamedSharding(self.mesh, P(DATA_AXIS))

    def replicate(self, tree):
        """Places every array of `tree` on all devices of the mesh (a no-op on one device)."""
        if self.mesh is None:
            return tree
        sharding = NamedSharding(self.mesh, P())

        def put(a):
            a = np.asarray(a) if not isinstance(a, jax.Array) or not a.is_fully_addressable else a
            return jax.make_array_from_callback(np.shape(a), sharding, lambda idx: a[idx])

        return jax.tree.map(put, tree)


def nearest_divisible(batch_size: int, n: int) -> list[int]:
    lower = (batch_size // n) * n
    return sorted({s for s in (lower, lower + n) if s >= max(n, 2)})


def check_processes(coordinator, num_processes, process_id):
    """Validates the multi-host flags; returns True when jax.distributed should start."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given):
        return False
    if not all(given):
        raise ValueError("multi-host runs need all of --coordinator HOST:PORT, --num-processes P "
                         "and --process-id I (0 <= I < P)")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id {process_id} must be in [0, {num_processes}) for "
                         f"--num-processes {num_processes}")
    if ":" not in coordinator:
        raise ValueError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
    return True


def setup(coordinator=None, num_processes=None, process_id=None, devices=None, *,
          batch_size=None) -> DeviceEnv:
    """Starts jax.distributed if asked, builds the `data` mesh and checks the batch size.

    Args:
      coordinator, num_processes, process_id: the multi-host flags; all or none. When none
        are given, JAX's own cluster detection still applies if its variables are set
        (e.g. JAX_COORDINATOR_ADDRESS with SLURM or Open MPI).
      devices: how many devices to use (default all visible, over all processes).
      batch_size: the global batch, which must divide evenly across the devices.
    """
    if check_processes(coordinator, num_processes, process_id):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()
    available = jax.devices()
    n = len(available) if devices is None else devices
    if n > len(available):
        raise ValueError(f"--devices {n} asks for more devices than the {len(available)} visible "
                         f"({available[0].platform}); use --devices {len(available)} or fewer")
    if batch_size is not None and batch_size % n:
        raise ValueError(
            f"the global batch size {batch_size} does not divide evenly across {n} devices; use "
            f"--batch-size {' or '.join(map(str, nearest_divisible(batch_size, n)))}, or change --devices"
        )
    mesh = None
    if n > 1:
        mesh = jax.make_mesh((n,), (DATA_AXIS,), devices=available[:n],
                             axis_types=(jax.sharding.AxisType.Auto,))
    return DeviceEnv(mesh, jax.process_index(), jax.process_count())


def to_host(tree):
    """Numpy copies of replicated arrays, read from this process's own shard (no collective)."""
    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable and a.is_fully_replicated:
            return np.asarray(a.addressable_shards[0].data)
        return np.asarray(jax.device_get(a))
    return jax.tree.map(get, tree)
