"""ember's Hydra plugins. Hydra instantiates plugins only from the `hydra_plugins` package, so the
implementation in `ember.experiment` is named here."""

from ember.experiment.optuna_sweeper import OptunaSweeperImpl


class EmberOptunaSweeper(OptunaSweeperImpl):
    """`hydra/sweeper=ember_optuna` (chosen by `hparams_search=optuna`)."""
