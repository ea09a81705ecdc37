"""One measurement in a fresh process: `python -m benchmarks.child <workload> <contender> <outfile>`.

Runs CONTENDERS[contender] of benchmarks/workloads/<workload>.py with the JSON given by --params,
adds the process's peak RSS, and writes the result as JSON to <outfile>. The parent times the whole
process and passes its spawn time in BENCH_SPAWN_TIME.

Example:
    python -m benchmarks.child step_overhead handwritten /tmp/r.json \
        --params '{"sizes": [64, 128, 10], "n_samples": 2000, "batch_size": 32, "epochs": 1, "log_keys": 0}'
"""

import argparse
import importlib
import json
import os
import resource
import shutil
import sys
import tempfile

import torch


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child")
    parser.add_argument("workload", help="a module in benchmarks/workloads, e.g. step_overhead")
    parser.add_argument("contender", help="a key of that module's CONTENDERS, e.g. handwritten")
    parser.add_argument("outfile", help="where the result JSON goes")
    parser.add_argument("--params", default="{}", help="JSON dict handed to the contender")
    parser.add_argument("--workdir", default=None, help="parent folder for this run's files")
    args = parser.parse_args(argv)

    # One thread for every contender: the machine is small and shared, and the comparison is
    # about per-step overhead, not kernel parallelism.
    torch.set_num_threads(1)
    workload = importlib.import_module(f"benchmarks.workloads.{args.workload}")
    if args.contender not in workload.CONTENDERS:
        sys.exit(
            f"unknown contender {args.contender!r} for workload {args.workload!r}; "
            f"available: {', '.join(workload.CONTENDERS)}"
        )
    workdir = tempfile.mkdtemp(prefix=f"{args.workload}-{args.contender}-", dir=args.workdir)
    try:
        result = workload.CONTENDERS[args.contender](json.loads(args.params), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if os.environ.get("RANK", "0") != "0" or os.environ.get("LOCAL_RANK", "0") != "0":
        return  # a second DDP process, started by running this command again: rank 0 reports
    # Linux reports ru_maxrss in KiB.
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(args.outfile, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
