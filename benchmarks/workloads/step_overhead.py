"""Workloads 1, 2, 3 and 5: the cost of a training step, with and without a Trainer around it.

params: sizes (MLP widths), n_samples, batch_size, epochs, log_keys (0 for workloads 1 and 3,
20 for workload 2). Every contender trains the same MLP with Adam on the same data and reports the
time from the first batch start to the last batch end (see common.StepClock).
"""

from functools import partial

import torch
import torch.nn.functional as F

from benchmarks import common


def run_handwritten(params, workdir):
    """The plain PyTorch loop every other contender is compared with."""
    torch.manual_seed(0)
    x, y = common.classification_data(params["n_samples"], params["sizes"][0], params["sizes"][-1])
    train_loader = common.loader(x, y, params["batch_size"], shuffle=True)
    model = common.mlp(params["sizes"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    log_keys = params["log_keys"]
    # The minimal bookkeeping for workload 2: the step values and a running sum for the epoch mean.
    epoch_sums = torch.zeros(log_keys)
    epoch_count = 0
    epoch_means = []
    clock = common.StepClock()
    model.train()
    for _ in range(params["epochs"]):
        for batch_idx, (xb, yb) in enumerate(train_loader):
            clock.batch_start(batch_idx)
            loss = F.cross_entropy(model(xb), yb)
            if log_keys:
                step_values = torch.stack(common.log_values(loss, log_keys))
                epoch_sums += step_values
                epoch_count += 1
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            clock.batch_end(batch_idx)
        if log_keys:
            epoch_means.append((epoch_sums / epoch_count).tolist())
            epoch_sums.zero_()
            epoch_count = 0
    return {**clock.loop_result(), "info": {"framework": "torch " + torch.__version__}}


def run_trainer(framework_name, mode, params, workdir):
    """ember or Lightning, `bare` or with `defaults`, fitting the same module on the same data."""
    fw = common.framework(framework_name)
    torch.manual_seed(0)
    x, y = common.classification_data(params["n_samples"], params["sizes"][0], params["sizes"][-1])
    train_loader = common.loader(x, y, params["batch_size"], shuffle=True)
    model = common.classifier_class(fw.Module, params["log_keys"])(params["sizes"])
    clock = common.StepClock()
    trainer = fw.Trainer(
        max_epochs=params["epochs"],
        callbacks=[common.clock_callback(fw.Callback, clock)],
        **common.trainer_kwargs(mode, workdir),
    )
    trainer.fit(model, train_loader)
    return {**clock.loop_result(), "info": common.trainer_info(fw, trainer)}


CONTENDERS = {
    "handwritten": run_handwritten,
    "ember-bare": partial(run_trainer, "ember", "bare"),
    "ember-defaults": partial(run_trainer, "ember", "defaults"),
    "lightning-bare": partial(run_trainer, "lightning", "bare"),
    "lightning-defaults": partial(run_trainer, "lightning", "defaults"),
}
