"""Showing a run: a tqdm progress bar (loss and Dice per epoch) and the loss-curve PNG."""

from __future__ import annotations

from pathlib import Path

from .trainer import TrainEvent


class TqdmProgress:
    """A ``progress`` callback for :func:`~ptx_annotator.training.trainer.fit` drawing a tqdm bar.

    The bar counts steps over the whole run; its postfix shows the running training loss and,
    after each epoch, the validation loss and Dice. One line per finished epoch is also written.
    """

    def __init__(self, file=None, disable: bool = False):
        self.file = file
        self.disable = disable
        self.bar = None

    def __call__(self, event: TrainEvent) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event.epochs * event.steps, unit="step", file=self.file, disable=self.disable,
                            dynamic_ncols=True, desc="training")
        if event.kind == "step":
            self.bar.update(1)
            self.bar.set_postfix_str(f"epoch {event.epoch}/{event.epochs} loss {event.loss:.4f}", refresh=False)
            return
        dice = "n/a" if event.val_dice is None else f"{event.val_dice:.3f}"
        val = "n/a" if event.val_loss is None else f"{event.val_loss:.4f}"
        self.bar.write(f"epoch {event.epoch}/{event.epochs}: train loss {event.loss:.4f}, validation loss {val}, "
                       f"validation Dice {dice}" + ("  (best so far)" if event.best_epoch == event.epoch else ""),
                       file=self.file)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def loss_curve_path(checkpoint) -> Path:
    """``model.safetensors`` -> ``model-loss.png`` beside it."""
    checkpoint = Path(checkpoint)
    name = checkpoint.name[: -len(".safetensors")] if checkpoint.name.endswith(".safetensors") else checkpoint.stem
    return checkpoint.with_name(f"{name}-loss.png")


def save_loss_curve(history: list[dict], path, title: str = "") -> Path | None:
    """Training and validation loss (and validation Dice) per epoch as a PNG; None without epochs."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ptx_annotator.atomic import atomic_path

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(6, 3.6), dpi=100)
    axis = figure.add_subplot(1, 1, 1)
    axis.plot(epochs, [row["train_loss"] for row in history], "o-", label="training loss")
    if any(row.get("val_loss") is not None for row in history):
        axis.plot(epochs, [row.get("val_loss") for row in history], "s-", label="validation loss")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (BCE + Jaccard or focal + Dice)")
    if any(row.get("val_dice") is not None for row in history):
        dice_axis = axis.twinx()
        dice_axis.plot(epochs, [row.get("val_dice") for row in history], "^--", color="tab:green", label="validation Dice")
        dice_axis.set_ylabel("validation Dice")
        dice_axis.set_ylim(0, 1)
        dice_axis.legend(loc="upper right")
    axis.legend(loc="upper left")
    axis.set_title(title or "training")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return path
