"""Weight averaging: an exponential moving average of the parameters, kept on the device.

After every step, ``average <- average + (1 - d_t) (params - average)`` over the one
flat parameter buffer, with ``d_t = min(decay, (1 + t) / (10 + t))`` at global step
``t`` (the usual warm-up, so the first steps do not drag in the initial weights for
long). At the end of the run the averaged weights replace the raw ones: they are
what is evaluated, printed and saved (Polyak averaging; the EMA form of SWA). With a
constant learning rate the raw weights keep bouncing around a minimum while their
average sits near its centre, which is where the gain comes from
(docs/accuracy.md).

It is part of the run's state (:class:`~mlp_xp.train.state.TrainState`) and the step
function updates it after the optimizer: three device operations, no copy, no sync
(written into the buffer with ``out=`` where the backend takes it); the CuPy fast step
does it in one fused kernel, with :meth:`WeightAverage.weight` computed for the epoch
ahead.
"""

from __future__ import annotations

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``model``'s parameters (``decay`` in (0, 1))."""

    def __init__(self, model, decay: float):
        self.decay = float(decay)
        self.backend, self.dtype = model.backend, model.dtype
        with model.backend.scope():
            self.buffer = model.xp.asarray(model.params.buffer, copy=True)
            self._diff = model.xp.zeros_like(self.buffer)
        self.out = model.backend.writes_out

    def weight(self, t: int) -> float:
        """How much of the parameters goes into the average after 0-based global step ``t``."""
        return 1.0 - min(self.decay, (1.0 + t) / (10.0 + t))

    def update(self, params, t: int) -> None:
        """Move the average towards ``params`` (the flat buffer) after global step ``t``."""
        weight, xp = self.weight(t), self.backend.xp
        with self.backend.scope():
            if self.out:
                xp.subtract(params, self.buffer, out=self._diff)
                xp.multiply(self._diff, weight, out=self._diff)
                xp.add(self.buffer, self._diff, out=self.buffer)
            else:
                self.buffer = self.buffer + weight * (params - self.buffer)

    def load(self, buffer) -> None:
        """Continue from a checkpoint's average (a host array), in place (a captured CUDA
        graph keeps writing to this buffer)."""
        with self.backend.scope():
            self.buffer[...] = self.backend.put(buffer, self.dtype)

    def apply(self, model) -> None:
        """Write the averaged weights into ``model`` (in place)."""
        with model.backend.scope():
            model.params.buffer[...] = self.buffer
