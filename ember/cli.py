"""The `ember` command.

    ember fit -cd configs experiment=mnist trainer.max_epochs=2     (Hydra: see docs/experiments.md)
    ember plot lightning_logs/version_0 lightning_logs/version_1 -o compare.png
    ember plot multiruns/x/2026-12-02/10-00-00_ab12cd          (a sweep: objective vs each parameter)
"""

from __future__ import annotations

import argparse
import os
import sys


STAGES = ("fit", "validate", "test", "predict", "tune")


def main(argv: list[str] | None = None) -> int:
    """Run the `ember` command with `argv` (default: the process's arguments); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    argv = _completion_query(argv)
    if argv and argv[0] in STAGES:
        # Hydra parses the rest (overrides, -m, -cd, --cfg, --help)
        try:
            from ember.experiment.app import main as run_stage
        except ImportError as err:
            raise SystemExit(f"ember {argv[0]} needs Hydra: pip install 'ember[hydra]' ({err})") from None
        return run_stage(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="ember", description="ember: organized PyTorch training.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:  # listed for --help; run by Hydra above
        commands.add_parser(stage, help=f"{stage} from Hydra configs (`ember {stage} --help`; docs/experiments.md)")
    plot = commands.add_parser("plot", help="draw the logged curves of runs, or a sweep's objective",
                               description="Draw the logged curves of one or several runs from their CSV logs "
                                           "(one subplot per group of keys, one line per run and key), or, given "
                                           "a sweep folder of `ember fit -m`, its objective against each swept "
                                           "parameter (one subplot per parameter, one point per trial).")
    plot.add_argument("runs", nargs="+", metavar="RUN",
                      help="a CSVLogger run folder (with metrics.csv), a folder above runs, a metrics.csv, "
                           "or one sweep folder (with multirun.yaml or sweep.csv)")
    plot.add_argument("-o", "--output", default=None,
                      help="the image to write (default: metrics.png, or sweep.png in the sweep folder)")
    args = parser.parse_args(argv)

    if args.command == "plot":
        from ember.plot import is_sweep, plot_runs, plot_sweep

        sweep = len(args.runs) == 1 and is_sweep(args.runs[0])
        output = args.output or (f"{args.runs[0]}/sweep.png" if sweep else "metrics.png")
        try:
            plot_sweep(args.runs[0], output) if sweep else plot_runs(args.runs, output)
        except (FileNotFoundError, ImportError, ValueError) as err:
            parser.exit(1, f"ember plot: {err}\n")
        print(f"wrote {output}")
    return 0


def _completion_query(argv: list[str]) -> list[str]:
    """Tab completion: the script of `ember fit -sc install=bash` registers `ember` and calls `ember -sc
    query=bash` with the line typed so far in COMP_LINE ("ember fit trainer=..."). Hydra completes the
    overrides of an app named by the first word: the stage moves from the line to the arguments."""
    if argv[:1] not in (["-sc"], ["--shell-completion"]) or "COMP_LINE" not in os.environ:
        return argv
    line = os.environ["COMP_LINE"]
    words = line.split()
    if len(words) < 2 or words[1] not in STAGES:
        return argv
    start = line.index(words[1])
    os.environ["COMP_LINE"] = line[:start] + line[start + len(words[1]):].lstrip()
    cut = len(line) - len(os.environ["COMP_LINE"])
    os.environ["COMP_POINT"] = str(max(0, int(os.environ.get("COMP_POINT", len(line))) - cut))
    config_dir = [words[i] for i in range(2, len(words)) if words[i - 1] in ("-cd", "--config-dir")]
    return [words[1], *(["--config-dir", config_dir[-1]] if config_dir else []), *argv]


if __name__ == "__main__":
    sys.exit(main())
