"""Devices and hosts: the data mesh, replicated placement, and jax.distributed start-up."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnet.errors import ConfigError

DATA_AXIS = "data"  # `jaxnet train`: one run's minibatch split over devices
SETTINGS_AXIS = "settings"  # `jaxnet sweep`: independent runs split over devices


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
        """Splits an array's first (batch) axis over the `data` axis; None on one device."""
        return None if self.mesh is None else NamedSharding(self.mesh, P(DATA_AXIS))

    def replicate(self, tree):
        """Places every array of `tree` on all devices of the mesh (a no-op on one device).

        With several processes, every process must pass the same values (same seed, same
        data); each one fills only its own devices, without communication.
        """
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
    """Validates the multi-host settings; returns True when jax.distributed should start."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given):
        return False
    if not all(given):
        missing = [f"`{name}`" for name, g in zip(("coordinator", "num_processes", "process_id"),
                                                  given, strict=True) if not g]
        raise ConfigError("multi-host runs need all of `coordinator=HOST:PORT`, `num_processes=P` "
                          f"and `process_id=I` (0 <= I < P); missing {', '.join(missing)}")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"`process_id={process_id}` must be in [0, {num_processes}) for "
                          f"`num_processes={num_processes}`")
    if ":" not in coordinator:
        raise ConfigError(f"`coordinator={coordinator!r}` is invalid: expected HOST:PORT, the "
                          "address of process 0, e.g. 10.0.0.1:1234")
    return True


def _start_processes(coordinator, num_processes, process_id):
    """Starts jax.distributed from the flags, or from a cluster's variables, or not at all."""
    explicit = check_processes(coordinator, num_processes, process_id)
    if jax.distributed.is_initialized():  # e.g. a second setup() in the same process
        return
    from_env = not explicit and bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
    if explicit or from_env:
        # Gloo carries the cross-process collectives of CPU devices (the default of recent
        # JAX; older versions have none unless asked). GPUs and TPUs use their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif from_env:
        try:  # the process count and index come from SLURM, Open MPI, Kubernetes, ...
            jax.distributed.initialize()
        except ValueError as err:
            raise ConfigError(
                "JAX_COORDINATOR_ADDRESS is set, but no cluster environment (SLURM, Open MPI) "
                f"gives the process count and index ({err}); pass `coordinator`, "
                "`num_processes` and `process_id`, or unset JAX_COORDINATOR_ADDRESS"
            ) from None


def _pick_devices(n: int | None) -> list:
    """The first n devices, taking the same number from every process (n=None: all)."""
    available = jax.devices()
    n = len(available) if n is None else n
    if n > len(available):
        hint = ("" if available[0].platform != "cpu" else
                f" (to simulate {n} CPU devices: XLA_FLAGS=--xla_force_host_platform_device_count={n})")
        raise ConfigError(f"`devices={n}` asks for more devices than the {len(available)} "
                          f"visible ({available[0].platform}); use `devices={len(available)}` or "
                          f"fewer{hint}")
    processes = jax.process_count()
    if processes == 1:
        return available[:n]
    if n % processes:
        raise ConfigError(f"`devices={n}` must be a multiple of the {processes} processes, "
                          "since every process drives the same number of its devices; use "
                          f"`devices={max(n // processes, 1) * processes}` or leave it out (all "
                          "devices)")
    per_process = n // processes
    picked = []
    for p in range(processes):
        local = sorted(jax.local_devices(process_index=p), key=lambda d: d.id)
        picked += local[:per_process]
    return picked


def setup(coordinator=None, num_processes=None, process_id=None, devices=None, *,
          batch_size=None, axis: str = DATA_AXIS) -> DeviceEnv:
    """Starts jax.distributed if asked, builds a one-axis mesh and checks the batch size.

    Call it before any other JAX work: jax.distributed must start before the devices do.

    Args:
      coordinator, num_processes, process_id: the multi-host flags (HOST:PORT of process 0,
        the number of processes, this process's index); all or none. When none are given
        and JAX_COORDINATOR_ADDRESS is set, jax.distributed starts from it, with the process
        count and index detected by JAX from the cluster (SLURM, Open MPI, ...).
      devices: how many devices to use (default all visible, over all processes). With
        several processes it must be a multiple of their number, and every process
        contributes the same number of its own devices.
      batch_size: the global batch (over all devices and processes), which must divide
        evenly across the devices.
      axis: the mesh axis name: DATA_AXIS (one run's batch) or SETTINGS_AXIS (a sweep's runs).

    Returns:
      A DeviceEnv whose mesh has one axis, `axis`, over the chosen devices (None for one).

    Raises:
      ConfigError: with a one-line explanation, for incomplete or inconsistent multi-host
        settings, more devices than visible, or a batch size the devices do not divide.
    """
    _start_processes(coordinator, num_processes, process_id)
    chosen = _pick_devices(devices)
    n = len(chosen)
    if batch_size is not None and batch_size % n:
        raise ConfigError(
            f"the global `batch_size={batch_size}` does not divide evenly across {n} devices; use "
            f"`batch_size={' or '.join(map(str, nearest_divisible(batch_size, n)))}`, or change "
            "`devices`")
    mesh = None
    if n > 1:
        mesh = jax.make_mesh((n,), (axis,), axis_types=(jax.sharding.AxisType.Auto,),
                             devices=chosen)
    return DeviceEnv(mesh, jax.process_index(), jax.process_count())


def to_host(tree):
    """Numpy copies of replicated arrays, read from this process's own shard (no collective).

    Safe to call on one process only (process 0 writing a checkpoint): every array of a
    training state is replicated, so each process holds all of it.
    """
    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            if not a.is_fully_replicated:  # a bug in the caller, not a user mistake
                raise ValueError(
                    f"to_host needs replicated arrays, but one of shape {a.shape} is sharded as "
                    f"{a.sharding} across processes; gather it on every process first "
                    "(jax.experimental.multihost_utils.process_allgather)")
            return np.asarray(a.addressable_shards[0].data)
        return np.asarray(jax.device_get(a))
    return jax.tree.map(get, tree)


def put_rows(tree, mesh):
    """Places host arrays on `mesh`, each split along axis 0 over the mesh's one axis.

    Every process passes the same full arrays (axis 0 a multiple of the mesh size) and fills
    only its own devices, without communication; `gather` is the inverse.
    """
    sharding = NamedSharding(mesh, P(mesh.axis_names[0]))

    def put(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(put, tree)


def gather(tree):
    """Numpy copies of whole arrays, also of arrays sharded across processes (then every
    process must call it: the shards are exchanged with a collective)."""
    leaves = jax.tree.leaves(tree)
    if all(not isinstance(a, jax.Array) or a.is_fully_addressable for a in leaves):
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
