"""Training callbacks that talk to people and files: progress bar, epoch lines, run logs."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from ..fileio import atomic_write_text
from ..train import Callback, History

__all__ = ["EpochLog", "ProgressBar", "RunLog", "format_epoch"]


def format_epoch(record: dict, total: int) -> str:
    """One plain line for an epoch record."""
    line = f"epoch {record['epoch']:>3d}/{total}  loss {record['train_loss']:.4f}"
    if "val_loss" in record:
        line += f"  val_loss {record['val_loss']:.4f}"
    if "val_accuracy" in record:
        line += f"  val_acc {100 * record['val_accuracy']:6.2f}%"
    elif "val_mse" in record:
        line += f"  val_mse {record['val_mse']:.4f}"
    return line + f"  {record['seconds']:.2f} s  lr {record['lr']:.4g}"


class EpochLog(Callback):
    """One plain line per epoch (logs, pipes, ``--quiet``-less non-TTY runs)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def on_epoch_end(self, trainer, record):
        print(format_epoch(record, trainer.config.epochs), file=self.stream, flush=True)


class ProgressBar(Callback):
    """A tqdm bar per epoch with samples/s and the running loss.

    The loss shown is read from the device about ten times an epoch (those are
    the only syncs it adds); the finished epoch's line stays on screen.
    """

    def __init__(self, stream=None, mininterval: float = 0.1):
        from tqdm.auto import tqdm  # optional extra: pip install '.[progress]'

        self._tqdm = tqdm
        self.stream = stream or sys.stderr
        self.mininterval = mininterval
        self.bar = None

    def on_epoch_start(self, trainer, epoch, n_steps):
        self.every = max(1, n_steps // 10)
        self.batch = trainer.batch_size
        self.n = trainer.X.shape[0]
        self.bar = self._tqdm(
            total=self.n,
            initial=min(trainer.step * self.batch, self.n),
            desc=f"epoch {epoch}/{trainer.config.epochs}",
            unit="img",
            unit_scale=True,
            leave=False,
            file=self.stream,
            dynamic_ncols=True,
            mininterval=self.mininterval,
        )

    def on_step(self, trainer, step):
        done = min(step * self.batch, self.n)
        self.bar.update(done - self.bar.n)
        if step % self.every == 0 and trainer.last_loss is not None:
            self.bar.set_postfix(loss=f"{float(trainer.last_loss):.4f}", refresh=False)
            self.bar.refresh()

    def on_epoch_end(self, trainer, record):
        self.bar.close()
        self._tqdm.write(format_epoch(record, trainer.config.epochs), file=self.stream)


class RunLog(Callback):
    """Writes ``history.csv`` and ``history.json`` in a run folder after every epoch."""

    def __init__(self, run_dir, info: dict):
        self.dir = Path(run_dir)
        self.info = dict(info)

    def on_epoch_end(self, trainer, record):
        self.write(trainer.history)

    def write(self, history) -> None:
        rows = history.rows()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[*History.COLUMNS, "device"], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **{k: row.get(k, "") for k in History.COLUMNS},
                    "device": self.info.get("device", ""),
                }
            )
        atomic_write_text(self.dir / "history.csv", buf.getvalue())
        atomic_write_text(
            self.dir / "history.json",
            json.dumps({**self.info, "history": history.as_dict()}, indent=1),
        )
