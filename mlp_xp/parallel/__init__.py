"""Data-parallel training over MPI (mpi4py) and NCCL; the core never imports this package.

``mpiexec -n N mlp-xp train --distributed`` runs N ranks of one synchronous run: the
global batch is split by rank, gradients are summed in one allreduce per step over one
flat buffer, and randomness is keyed per sample, so the result does not depend on N
(:mod:`mlp_xp.parallel.trainer`). :mod:`mlp_xp.parallel.world` holds the communicator
and its collectives, :mod:`mlp_xp.parallel.nccl` the GPU ranks' NCCL allreduce, and
:mod:`mlp_xp.parallel.launch` what the command line does differently as one rank.
"""

from .trainer import DistributedTrainer, ShardPlan, share
from .world import DistributedError, LocalWorld, World, start_world

__all__ = [
    "DistributedTrainer",
    "DistributedError",
    "LocalWorld",
    "ShardPlan",
    "World",
    "share",
    "start_world",
]
