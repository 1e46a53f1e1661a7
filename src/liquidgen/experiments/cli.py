"""``liquidgen experiment CONFIG.yaml``: run a grid of training runs, gather, report."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys


def _job_command(args: argparse.Namespace, job: int) -> list[str]:
    """The command line of ``--jobs``' process number ``job`` (2..N): this one's grid,
    ``--set`` and ``--only``, one job, no progress bars."""
    command = [sys.executable, "-m", "liquidgen", "experiment", args.config, "--quiet"]
    command += ["--job-name", f"{job}/{args.jobs}", "--largest-first"]
    for item in args.set:
        command += ["--set", item]
    if args.only:
        command += ["--only", *args.only]
    return command


def _run_experiment(args: argparse.Namespace) -> int:
    from liquidgen.errors import ConfigError, LiquidgenError
    from liquidgen.experiments.grid import Experiment
    from liquidgen.experiments.runner import Runner

    if args.jobs < 1:
        raise ConfigError(f"--jobs needs >= 1 process, got {args.jobs}")
    if args.jobs > 1 and (args.torchrun is not None or os.name != "posix"):
        raise ConfigError(
            "--jobs needs POSIX file locks and runs without --torchrun (torchrun already "
            "runs each training on several processes)"
        )
    experiment = Experiment.load(args.config, args.set)
    name = args.job_name or (f"1/{args.jobs}" if args.jobs > 1 else "")
    prefix = f"[experiment {name}]" if name else "[experiment]"
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars of every model built
    runner = Runner(
        experiment,
        torchrun=args.torchrun,
        torchrun_args=shlex.split(args.torchrun_args),
        progress=not args.quiet,
        log=lambda message: print(f"{prefix} {message}", flush=True),
    )
    if args.dry_run:
        for row in runner.plan(args.only):
            sources = ", ".join(f"{k} {v:g}" for k, v in row["sources"].items())
            print(f"{row['run']}  [{row['status']}]  {row['max_steps']} steps  ({sources})")
            print(f"    {row['command']}")
        return 0
    if args.report:
        from liquidgen.experiments.report import write_report

        runner.collect()
        for path in write_report(experiment, runner.records()):
            print(path)
        return 0
    # a plain `kill` unwinds like an exception: the runs' clocks record the time spent
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # --jobs N: N-1 more processes of this command; each trains the runs no other holds
    jobs = [subprocess.Popen(_job_command(args, k)) for k in range(2, args.jobs + 1)]
    failed = True
    try:
        results = runner.run(args.only, largest_first=args.largest_first or args.jobs > 1)
        failed = False
    finally:
        for job in jobs:
            if failed:
                job.terminate()
            job.wait()
    codes = [job.returncode for job in jobs]
    if any(codes):
        failures = sum(code != 0 for code in codes)
        raise LiquidgenError(
            f"--jobs: {failures} of the other processes failed (exit codes {codes})"
        )
    if jobs:
        results = runner.collect()  # with the runs the other processes finished
    print(results)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``experiment`` to the ``liquidgen`` parser."""
    parser = subparsers.add_parser(
        "experiment",
        help="run a grid of training runs (sizes x mixtures x seeds x budgets), gather, report",
        description=(
            "Run an experiment grid (configs/experiments/*.yaml, docs/science.md): model sizes "
            "x data mixtures x seeds x compute budgets, each an ordinary `liquidgen train` run "
            "in OUT_DIR/runs/RUN (resumed when interrupted, skipped when done), on the data "
            "prepared once by the recipe named in `data_from`; then OUT_DIR/results.csv and "
            "results.json. --report writes the analyses (power-law fit, frontier, plots)."
        ),
    )
    parser.add_argument("config", help="experiment YAML (see configs/experiments/)")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the runs, their status and commands; run none"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="only these runs (glob on run names, or a size or mixture name)"
    )  # fmt: skip
    parser.add_argument(
        "--torchrun",
        type=int,
        metavar="N",
        help="launch each run as `torchrun --nproc_per_node N -m liquidgen train RUN/train.yaml`",
    )
    parser.add_argument(
        "--torchrun-args",
        default="--standalone",
        metavar="ARGS",
        help="launcher options before --nproc_per_node (default --standalone; e.g. "
        "'--nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:PORT' to scale out)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="gather the finished runs and write the analyses (run nothing)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an experiment key, e.g. --set out_dir=/tmp/x --set seeds=[0]",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="train N runs at a time, each in its own process (default 1); give each run "
        "threads=1 in `overrides:` so that N processes use N cores. Implies --largest-first",
    )
    parser.add_argument(
        "--largest-first",
        action="store_true",
        help="train the pending runs most expensive first ((decoder + LM head parameters) x "
        "steps), so that processes sharing a grid finish together (default: grid order)",
    )
    parser.add_argument("--job-name", default="", help=argparse.SUPPRESS)  # "2/3": log prefix
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run_experiment)
