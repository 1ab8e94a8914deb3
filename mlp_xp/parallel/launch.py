"""``mlp-xp train --distributed``: what the command does differently as one rank of many.

- the device: ``--device gpu`` (or ``auto`` with a GPU) becomes ``gpu:<local rank>``
  (modulo the GPUs this process sees: a scheduler that shows each rank only its own GPU
  gives ``gpu:0`` everywhere), one GPU per process of a machine; ``--device gpu:N`` is
  taken as given;
- one voice, one writer: only rank 0 prints progress and writes the model, the run log
  and checkpoints; the other ranks are silent unless something goes wrong;
- faults: an error on any rank prints its one line and ends every rank
  (``MPI_Abort``), so no rank waits forever in a collective; a watchdog does the same
  when no step finishes for ``--watchdog`` seconds.

Outside a launcher, or without mpi4py, ``--distributed`` is one line and exit 2: a run
that silently trained on one process where many were meant would waste a cluster slot.
"""

from __future__ import annotations

import contextlib
import os
import sys

from ..devices import parse_device
from ..errors import MlpXpError
from .world import AgreedError, World, start_world

__all__ = ["start", "device_for", "abort_on_error", "Quiet", "Silent"]


def start(args) -> World | None:
    """The world of a ``--distributed`` run (None for an ordinary one)."""
    if not getattr(args, "distributed", False):
        return None
    return start_world()


def device_for(device: str, world: World | None) -> str:
    """The device a rank uses: its local GPU for ``gpu``/``auto`` with GPUs, else ``device``.

    The rank counts the GPUs it sees (which creates no CUDA context), makes its own current
    before any other CUDA call and probes that one only, so each rank touches its own GPU
    and no other (on exclusive-process GPUs a second context on GPU 0 would fail).
    """
    if world is None:
        return device
    spec = str(device or os.environ.get("MLP_XP_DEVICE", "") or "auto").strip()
    kind = parse_device(spec).kind
    if kind not in ("auto", "gpu") or (kind == "gpu" and ":" in spec):
        return spec  # the CPU, or a GPU named by its index
    from ..backends import gpu_count, gpu_probe, make_current

    count = gpu_count()
    if count == 0:
        return spec  # get_backend uses the CPU for auto, or says in one line why no GPU
    # the GPUs this process sees, in turn (one each where a scheduler shows each rank its own)
    index = world.local_rank % count
    with contextlib.suppress(Exception):  # a device that does not work: its probe says why
        make_current(index)
    if kind == "auto" and not gpu_probe(index).ok:
        return "auto"  # get_backend falls back to the CPU, saying why
    return f"gpu:{index}"


@contextlib.contextmanager
def abort_on_error(world: World | None, command: str):
    """On any rank, an error ends the whole job with its one line (not a hang).

    A refusal every rank reaches together (:class:`AgreedError`) ends the job in order:
    rank 0 raises it (the command prints its one line and exits 2), the others exit 2
    without a word.
    """
    if world is None or world.size == 1:
        yield
        return
    try:
        yield
    except AgreedError:
        if world.is_root:
            raise
        raise Quiet(2) from None
    except MlpXpError as exc:
        world.abort(f"mlp-xp {command}: error: rank {world.rank}: {exc}", code=2)
    except Exception as exc:  # a bug or a device fault: still end every rank
        from ..backends import device_error_for

        error = device_error_for(exc) or f"{type(exc).__name__}: {exc}"
        world.abort(f"mlp-xp {command}: error: rank {world.rank}: {error}", code=1)


class Quiet(Exception):
    """This rank ends with exit status ``code`` and nothing to print (rank 0 speaks)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class Silent:
    """A text stream that drops what is written (the log of ranks other than 0)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def say(world: World | None, message: str) -> None:
    """A line on stderr, from rank 0 only."""
    if world is None or world.is_root:
        print(message, file=sys.stderr, flush=True)
