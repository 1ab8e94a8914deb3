"""The CuPy fast training step (placeholder while it is built)."""


def choose_step(trainer, generic, plan):
    return generic
