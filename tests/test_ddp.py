"""DDP on torch.distributed, with real processes (gloo on the CPU, one torch thread each): the result of
one process, exact resume, one set of files, and failures that end every rank in bounded time."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ember

HERE = Path(__file__).resolve().parent
JOB = HERE / "ddp_job.py"
sys.path.insert(0, str(HERE))

from ddp_job import Net, data  # noqa: E402  (the job's model and data, to check its results here)


def run_job(root: Path, *args: str, launcher: list[str] | None = None, timeout: float = 240) -> tuple[int, str, float]:
    """Run the job (and whatever it starts); (return code, output, seconds). Every process it reported is
    gone when this returns, or the test fails."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    command = (launcher or [sys.executable]) + [str(JOB), str(root), *args]
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    seconds = time.monotonic() - start
    # the processes share one pipe: a line of one may run into another's, so no line structure is assumed
    pids = [int(pid) for pid in re.findall(r"pid \d+ (\d+)", output)]
    time.sleep(0.5)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}\n{output[-3000:]}"
    return process.returncode, output, seconds


def _failed_at(output: str) -> float:
    """The wall-clock time at which the job's failing rank failed (it prints it)."""
    found = re.search(r"failing at (\d+\.\d+)", output)
    assert found, output[-3000:]
    return float(found.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def result(root: Path, rank: int = 0) -> dict:
    return json.loads((root / f"result-rank{rank}.json").read_text())


def weights(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "weights.pt", weights_only=True)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("one")
    code, output, _ = run_job(root, "--devices", "1", "--batch", "16", "--torchmetrics")
    assert code == 0, output[-3000:]
    return root


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    code, output, _ = run_job(root, "--devices", "2", "--batch", "8", "--torchmetrics")
    assert code == 0, output[-3000:]
    return root


def test_two_ranks_of_batch_8_give_one_process_of_batch_16(one_process, two_ranks):
    one, two = weights(one_process), weights(two_ranks)
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-6
    single, first, second = result(one_process), result(two_ranks, 0), result(two_ranks, 1)
    assert first["world_size"] == second["world_size"] == 2
    assert single["global_step"] == first["global_step"] == second["global_step"] == 8
    assert first["threads"] == second["threads"] == 1  # one torch thread per rank on 2 shared cores
    for name in ("train_loss_epoch", "seen", "val_seen"):  # sync_dist epoch values: the one-process ones
        assert first["metrics"][name] == pytest.approx(single["metrics"][name], abs=1e-6), name
        assert second["metrics"][name] == first["metrics"][name]
    assert first["metrics"]["seen"] == 64  # reduce_fx="sum" over both ranks, not multiplied by 2
    assert first["metrics"]["rank_max"] == 1.0


def test_sync_dist_sum_max_min_mean_and_torchmetrics_accuracy_equal_one_process(one_process, two_ranks):
    single, first, second = result(one_process), result(two_ranks, 0), result(two_ranks, 1)
    x = data().tensors[0][:, 0]
    expected = {"x_sum": x.sum(), "x_max": x.max(), "x_min": x.min(), "x_mean": x.mean()}
    for name, value in expected.items():  # every rank holds the value over all 64 samples
        assert single["metrics"][name] == pytest.approx(value.item(), abs=1e-5), name
        assert first["metrics"][name] == pytest.approx(single["metrics"][name], abs=1e-5), name
        assert second["metrics"][name] == first["metrics"][name], name
    # torchmetrics Accuracy synced by its own dist_sync: over the 64 training / 20 validation samples
    for name, total in (("train_acc", 64), ("val_acc", 20)):
        assert first["metrics"][name] == pytest.approx(single["metrics"][name], abs=1e-6), name
        assert second["metrics"][name] == first["metrics"][name], name
        assert single["metrics"][name] * total == pytest.approx(round(single["metrics"][name] * total))
    # rank_zero_only=True: rank 0's own value, not reduced with the other rank (which never logged it)
    assert first["metrics"]["rank0_only"] == single["metrics"]["rank0_only"] == 7.0
    assert "rank0_only" not in second["metrics"]


def test_step_values_with_sync_dist_reach_the_logger_reduced(one_process, two_ranks):
    def step_losses(root: Path) -> list[float]:
        import csv

        with open(root / "ember_logs" / "version_0" / "metrics.csv") as f:
            return [float(r["train_loss_step"]) for r in csv.DictReader(f) if r.get("train_loss_step")]

    single, two = step_losses(one_process), step_losses(two_ranks)
    assert len(single) == len(two) == 8
    # the mean of the two ranks' batch-of-8 losses is the loss of the one-process batch of 16
    assert two == pytest.approx(single, abs=1e-5)


def test_rank_zero_alone_writes_one_logger_version_and_one_checkpoint_folder(two_ranks):
    assert sorted(p.name for p in (two_ranks / "ember_logs").iterdir()) == ["version_0"]
    assert result(two_ranks, 1)["log_dir"] == result(two_ranks, 0)["log_dir"]
    assert sorted(p.name for p in (two_ranks / "checkpoints").iterdir()) == ["epoch=1-step=8.ckpt", "last.ckpt"]
    rows = (two_ranks / "ember_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    steps = [r.split(",")[0] for r in rows[1:] if r.split(",")[1]]
    assert steps == [str(s) for s in range(8)]  # each training step once, not once per rank


def test_torchrun_starts_the_same_run(two_ranks, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={port}"]
    code, output, _ = run_job(tmp_path, "--devices", "2", "--batch", "8", launcher=launcher)
    assert code == 0, output[-3000:]
    one, two = weights(two_ranks), weights(tmp_path)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert result(tmp_path, 1)["world_size"] == 2


def test_a_checkpoint_of_two_ranks_loads_into_one_process(two_ranks, tmp_path):
    saved = ember.checkpoint.load_checkpoint(two_ranks / "checkpoints" / "last.ckpt")
    assert not any(k.startswith("module.") for k in saved["state_dict"])
    model = Net()
    model.load_state_dict(saved["state_dict"])
    trainer = ember.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                            enable_model_summary=False)
    loader = torch.utils.data.DataLoader(data(20), batch_size=4)
    metrics = trainer.validate(model, loader, ckpt_path=two_ranks / "checkpoints" / "last.ckpt", verbose=False)
    assert metrics[0]["val_seen"] == 20

    class Predicting(Net):
        def predict_step(self, batch, batch_idx):
            return self.net(batch[0])

    fresh = Predicting()  # untrained: predict must load the 2-rank weights itself
    predictions = trainer.predict(fresh, loader, ckpt_path=two_ranks / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        expected = model.net(data(20).tensors[0])
    assert torch.equal(torch.cat(predictions), expected)


@pytest.mark.parametrize("fail", ["raise", "kill"])
def test_a_failing_rank_ends_every_rank_quickly(tmp_path, fail):
    code, output, seconds = run_job(tmp_path, "--fail", fail, "--fail-rank", "1", "--fail-step", "3")
    after_failure = time.time() - _failed_at(output)  # until every process was seen gone
    assert code != 0
    assert "rank 1 stopped answering" in output
    if fail == "raise":
        assert output.count("ValueError: planned failure on rank 1 at step 3") == 1  # its traceback, once
        assert "[rank 1] Traceback" in output
    assert after_failure < 60, after_failure
    assert seconds < 90, seconds  # process start included


@pytest.mark.slow  # waits out its 20 s timeout by design
def test_a_stalled_rank_ends_every_rank_after_the_timeout(tmp_path):
    code, output, seconds = run_job(tmp_path, "--fail", "sleep", "--fail-rank", "1", "--fail-step", "3",
                                    "--timeout", "20")
    after_failure = time.time() - _failed_at(output)
    assert code != 0
    assert "rank 1 stopped answering" in output and "timeout of 20 s" in output
    assert 20 <= after_failure < 60, after_failure  # the timeout, plus a margin
    assert seconds < 120, seconds


def test_both_ranks_killed_mid_epoch_resume_exactly(tmp_path):
    whole = tmp_path / "whole"
    code, output, _ = run_job(whole, "--shuffle", "--epochs", "3")
    assert code == 0, output[-3000:]
    run = tmp_path / "run"
    code, output, _ = run_job(run, "--shuffle", "--epochs", "3", "--kill-step", "6")  # epoch 1, batch 2 of 4
    assert code != 0 and not (run / "weights.pt").exists()
    code, output, _ = run_job(run, "--shuffle", "--epochs", "3", "--resume")
    assert code == 0, output[-3000:]
    one, two = weights(whole), weights(run)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert result(run, 1)["global_step"] == result(whole, 1)["global_step"] == 12
    assert result(run, 0)["metrics"]["train_loss_epoch"] == result(whole, 0)["metrics"]["train_loss_epoch"]


def test_early_stopping_seen_by_one_rank_stops_both_at_the_same_step(tmp_path):
    code, output, _ = run_job(tmp_path, "--stop-rank", "1", "--epochs", "5")
    assert code == 0, output[-3000:]
    first, second = result(tmp_path, 0), result(tmp_path, 1)
    assert first["global_step"] == second["global_step"] < 5 * 4


def test_a_hydra_sweep_of_ddp_jobs_makes_one_run_folder_per_job(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1"}
    sweep = tmp_path / "multirun"
    done = subprocess.run([sys.executable, str(HERE / "ddp_hydra_job.py"), "-m", "+batch=4,8",
                           f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multirun"]  # no folder of another rank
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    for job in ("0", "1"):
        assert (sweep / job / ".hydra").is_dir()
        assert sorted(p.name for p in (sweep / job / "ember_logs").iterdir()) == ["version_0"]
        assert done.stdout.count(f"done in {sweep / job}") == 2  # both ranks ran this job


def test_ddp_spawn_trains_as_one_process_and_brings_rank_zero_results_back(one_process, tmp_path):
    code, output, _ = run_job(tmp_path, "--spawn", "--devices", "2", "--batch", "8")
    assert code == 0, output[-3000:]
    assert len(set(re.findall(r"pid \d+ (\d+)", output))) == 5  # the caller, 2 ranks for fit, 2 for validate
    one, spawned = weights(one_process), weights(tmp_path)  # saved from the caller's module after fit
    assert max((one[k] - spawned[k]).abs().max().item() for k in one) < 1e-6
    single, back = result(one_process), result(tmp_path)
    assert back["global_step"] == single["global_step"] == 8 and back["epoch"] == 2
    for name in ("train_loss_epoch", "seen", "val_seen", "x_sum"):
        assert back["metrics"][name] == pytest.approx(single["metrics"][name], abs=1e-6), name
    assert back["best_model_path"] == str(tmp_path / "checkpoints" / "epoch=1-step=8.ckpt")
    assert back["log_dir"] == str(tmp_path / "ember_logs" / "version_0")
    assert sorted(p.name for p in (tmp_path / "ember_logs").iterdir()) == ["version_0"]
    # then trainer.validate(ckpt_path="best") in the caller: a second launch, whose metrics come back
    assert back["validated"]["val_seen"] == 20  # both ranks' halves of the 20 samples, summed
    assert back["validated"]["val_loss"] == pytest.approx(back["metrics"]["val_loss"], abs=1e-6)


class _Unpicklable(ember.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(4, 2)
        self.head.activation = lambda x: x.relu()  # a lambda cannot be pickled


def test_ddp_spawn_names_what_cannot_be_pickled(tmp_path):
    trainer = ember.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, default_root_dir=tmp_path,
                            logger=False, enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(data(8), batch_size=4)
    with pytest.raises(TypeError, match=r"sends 'model' to each process by pickling, and model\.head\.activation "
                                        r"cannot be pickled .*use strategy='ddp'"):
        trainer.fit(_Unpicklable(), loader)


@pytest.mark.slow  # the fast suite covers failures through strategy='ddp'; this is the spawn launcher's path
def test_ddp_spawn_a_raising_rank_ends_every_rank_and_the_caller_names_it(tmp_path):
    code, output, seconds = run_job(tmp_path, "--spawn", "--fail", "raise", "--fail-rank", "1", "--fail-step", "3")
    assert code != 0
    assert output.count("[rank 1] ValueError: planned failure on rank 1 at step 3") == 1
    assert "RankFailure: Trainer(strategy='ddp_spawn'): rank 1 exited with code 1" in output
    assert seconds < 90, seconds


GPUS = torch.cuda.device_count()


@pytest.mark.skipif(GPUS < 1, reason=f"the NCCL path needs a CUDA GPU; this machine has {GPUS}")
def test_nccl_on_one_gpu_trains_as_the_cpu_process(one_process, tmp_path):
    code, output, _ = run_job(tmp_path, "--accelerator", "gpu", "--ddp", "--devices", "1", "--batch", "16")
    assert code == 0, output[-3000:]
    assert result(tmp_path)["backend"] == "nccl" and result(tmp_path)["device"] == "cuda:0"
    one, gpu = weights(one_process), weights(tmp_path)
    assert max((one[k] - gpu[k].cpu()).abs().max().item() for k in one) < 1e-4  # CUDA kernels round differently


@pytest.mark.skipif(GPUS < 2, reason=f"2 NCCL ranks need 2 CUDA GPUs (one each); this machine has {GPUS}")
def test_two_gpu_ranks_on_nccl_give_the_one_process_result(one_process, tmp_path):
    code, output, _ = run_job(tmp_path, "--accelerator", "gpu", "--devices", "2", "--batch", "8")
    assert code == 0, output[-3000:]
    first, second = result(tmp_path, 0), result(tmp_path, 1)
    assert first["backend"] == second["backend"] == "nccl"
    assert (first["device"], second["device"]) == ("cuda:0", "cuda:1")
    assert first["global_step"] == second["global_step"] == result(one_process)["global_step"]
    one, gpu = weights(one_process), weights(tmp_path)
    assert max((one[k] - gpu[k].cpu()).abs().max().item() for k in one) < 1e-4
    assert first["metrics"]["seen"] == 64
