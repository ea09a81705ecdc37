"""A callback that draws validation inputs above their reconstructions after each validation."""

from pathlib import Path

import torch

import ember.lightning as pl
from ember.lightning.loggers import TensorBoardLogger, WandbLogger


class ReconstructionPlotter(pl.Callback):
    """Saves ``reconstructions/epoch=NNN.png`` (inputs on top, reconstructions below) after validation.

    The same picture goes to W&B (as ``wandb.Image``) and TensorBoard (as a figure) when those loggers
    are attached.

    Args:
        images: a (N, 1, 28, 28) tensor of fixed validation images, the same every epoch; None: the first
            `num_images` of the datamodule's validation set (how a config, which holds no tensors, says it).
        dirpath: folder for the PNG files.
        num_images: how many validation images to draw when `images` is None.
    """

    def __init__(self, images=None, dirpath="reconstructions", num_images=10):
        super().__init__()
        self.images = images
        self.dirpath = Path(dirpath)
        self.num_images = num_images

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        if self.images is None:
            val_data = trainer.datamodule.val_data
            self.images = torch.stack([val_data[i][0] for i in range(self.num_images)])
        import matplotlib

        matplotlib.use("Agg")  # no display on a training machine
        import matplotlib.pyplot as plt

        x = self.images.to(pl_module.device).view(len(self.images), -1)
        with torch.no_grad():
            x_hat = pl_module.decoder(pl_module.encoder(x)).clamp(0, 1)
        n = len(self.images)
        fig, axes = plt.subplots(2, n, figsize=(n * 1.1, 2.4))
        for i in range(n):
            for row, picture in enumerate((x[i], x_hat[i])):
                axes[row, i].imshow(picture.view(28, 28).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
                axes[row, i].axis("off")
        axes[0, 0].set_title("input", fontsize=8, loc="left")
        axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
        fig.suptitle(f"epoch {trainer.current_epoch}", fontsize=9)

        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch={trainer.current_epoch:03d}.png"
        fig.savefig(path, dpi=80)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.experiment.log({"reconstructions": wandb.Image(str(path)), "trainer/global_step": trainer.global_step})
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("reconstructions", fig, global_step=trainer.global_step)
        plt.close(fig)
