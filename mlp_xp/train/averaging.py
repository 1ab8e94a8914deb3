"""Weight averaging: an exponential moving average of the parameters, kept on the device.

After every step, ``average <- average + (1 - d_t) (params - average)`` over the one
flat parameter buffer, with ``d_t = min(decay, (1 + t) / (10 + t))`` at global step
``t`` (the usual warm-up, so the first steps do not drag in the initial weights for
long). At the end of the run the averaged weights replace the raw ones: they are
what is evaluated, printed and saved (Polyak averaging; the EMA form of SWA). With a
constant learning rate the raw weights keep bouncing around a minimum while their
average sits near its centre, which is where the gain comes from
(docs/accuracy.md).

It is a :class:`~mlp_xp.train.Callback`: after a step it makes three device operations,
no copy, no sync (written into the buffer with ``out=`` where the backend takes it).
A step that updates the average itself says so (``runner.averages(s)``): the CuPy fast
step does, in one fused kernel inside its CUDA graph, with :meth:`weight` computed for
the epoch ahead.
"""

from __future__ import annotations

from .history import Callback

__all__ = ["WeightAverage"]


class WeightAverage(Callback):
    """The moving average of ``trainer.model``'s parameters (``decay`` in (0, 1))."""

    def __init__(self, trainer, decay: float):
        self.decay = float(decay)
        model = trainer.model
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

    def on_step(self, trainer, step: int) -> None:
        s = step - 1  # the step just run, 0-based in its epoch
        averages = getattr(trainer.runner, "averages", None)
        if averages is not None and averages(s):
            return  # the step updated the average itself
        self.update(trainer.model.params.buffer, trainer.epoch * trainer.steps_per_epoch + s)

    def load(self, buffer) -> None:
        """Continue from a checkpoint's average (a host array), in place (a captured CUDA
        graph keeps writing to this buffer)."""
        with self.backend.scope():
            self.buffer[...] = self.backend.put(buffer, self.dtype)

    def apply(self, model) -> None:
        """Write the averaged weights into ``model`` (in place)."""
        with model.backend.scope():
            model.params.buffer[...] = self.buffer
