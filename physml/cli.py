"""The ``physml`` command line.

Each subcommand is one ``_add_<name>_parser(subparsers)`` function that registers its arguments and
sets ``func`` (a callable taking the parsed namespace and returning an exit code); adding a subcommand
means writing one such function and appending it to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from physml.config import PROFILES, ParamsModel, load_params


def _load(args: argparse.Namespace) -> ParamsModel:
    """params.yaml from ``--params``, with ``--profile`` (when given) overriding its profile; a file that is not
    there → ValueError saying where it was looked for and how to name another."""
    if not Path(args.params).exists():
        raise ValueError(f"params file {str(args.params)!r} does not exist in {Path.cwd()}: run physml in the "
                         "project folder (it holds params.yaml) or name the file with --params")
    params = load_params(args.params)
    profile = getattr(args, "profile", None)
    return params.with_profile(profile) if profile else params


def _subparser(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line ``help`` (in ``physml --help``) is also its own ``--help``'s description."""
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")


def _add_common(p: argparse.ArgumentParser, profile: bool = True) -> None:
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    if profile:
        p.add_argument("--profile", choices=PROFILES, default=None, help="override the profile in the params file")


# ---- generate ------------------------------------------------------------------------------------
def _cmd_generate(args: argparse.Namespace) -> int:
    from physml.data import generate_case
    from physml.stages import check_output_grids

    params = _load(args)
    cases = list(params.cases) if args.case == "all" else [args.case]
    for case in cases:
        params.case(case)
    check_output_grids(params, cases)
    for case in cases:
        out = args.out if args.out is not None else (Path("data") if args.root is None else args.root / "data")
        path = generate_case(case, params, out, progress=not args.no_progress, force=args.force)
        print(f"{case}: {path}")
    return 0


def _add_generate_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "generate", help="generate datasets (train/val/test) for a case or all cases")
    p.add_argument("--case", required=True, help="case name from params.yaml, or 'all'")
    _add_common(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None, help="data root (default: data, or ROOT/data with --root)")
    where.add_argument("--root", type=Path, default=None,
                       help="project root, as the other stages take it: the data go to ROOT/data")
    p.add_argument("--force", action="store_true", help="regenerate even when up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)


# ---- verify --------------------------------------------------------------------------------------
def _cmd_verify(args: argparse.Namespace) -> int:
    from physml.verify import write_verification_report

    path, n_fail = write_verification_report(args.out, args.case or None, log=lambda m: print(m, file=sys.stderr))
    print(path)
    if n_fail:
        print(f"physml verify: error: {n_fail} solver check(s) fail; see {path}", file=sys.stderr)
        return 1
    return 0


def _add_verify_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "verify", help="write reports/solver_verification.md from every problem's verification()")
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default: reports)")
    p.add_argument("--case", action="append", help="only these cases (repeatable; default: all registered)")
    p.set_defaults(func=_cmd_verify)


# ---- train / constrain / evaluate / report (the pipeline stages, see physml.stages) ---------------
def _add_stage_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--case", required=True, help="case name from params.yaml")
    p.add_argument("--model", required=True, help="model of the experiment matrix (anp, ensemble, fno)")
    _add_common(p)
    p.add_argument("--root", type=Path, default=Path("."), help="project root holding data/, models/, … (default: .)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for this stage (default: 2, or fewer if fewer cores: the count changes "
                        "torch's reductions, so a fixed default keeps the reported numbers)")


def _cmd_train(args: argparse.Namespace) -> int:
    from physml import stages

    print(stages.train(args.case, args.model, _load(args), args.root, progress=not args.no_progress))
    return 0


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "train", help="train the networks of one case × model (plain and constrained variants)")
    _add_stage_common(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_constrain(args: argparse.Namespace) -> int:
    from physml import stages

    print(stages.constrain(args.case, args.model, _load(args), args.root))
    return 0


def _add_constrain_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "constrain", help="predict the test split and apply every constraint of the matrix")
    _add_stage_common(p)
    p.set_defaults(func=_cmd_constrain)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from physml import stages

    params = _load(args)
    results = stages.evaluate(args.case, args.model, params, args.root)
    for constraint, metrics in results.items():
        shown = ", ".join(f"{k}={v:.3g}" for k, v in metrics.items() if isinstance(v, float))
        print(f"{args.case}/{args.model}/{constraint}: {shown}")
    if not args.no_track:
        runs = stages.track(args.case, args.model, params, args.root)
        print(f"MLflow runs: {runs}")
    return 0


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "evaluate", help="metrics and figures of every constraint; log them to MLflow")
    _add_stage_common(p)
    p.add_argument("--no-track", action="store_true", help="write metrics files only, no MLflow runs")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_seed_study(args: argparse.Namespace) -> int:
    from physml import stages
    from physml.report import STUDY_METRIC

    params = _load(args)
    result = stages.seed_study(args.case, args.model, params, args.root, progress=not args.no_progress)
    metric = STUDY_METRIC[stages.group_name(args.case)][0]
    for constraint in result[metric]:
        print(f"{args.case}/{args.model}/{constraint}: {metric} mean={result[f'{metric}_mean'][constraint]:.4g} "
              f"spread={result[f'{metric}_spread'][constraint]:.2g} over seeds {result['seeds']}")
    if not args.no_track:
        print(f"MLflow run: {stages.track_seed_study(args.case, args.model, params, args.root)}")
    return 0


def _add_seed_study_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "seed-study", help="retrain with every seed of the case's matrix group (matrix.<group>.seeds) and "
                                          "write each constraint's test error per seed (seeds.json): BOON the plain and "
                                          "the BOON FNO (relative L2), ProbConserv the plain black box (MSE of the post "
                                          "hoc constraints)")
    _add_stage_common(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-track", action="store_true", help="write seeds.json only, no MLflow run")
    p.set_defaults(func=_cmd_seed_study)


def _cmd_track(args: argparse.Namespace) -> int:
    from physml import stages

    params = _load(args)
    try:
        results = stages.track_results(params, args.root, case=args.case, model=args.model)
    except stages.TrackingRefused as exc:  # what was logged, then the refusals
        _print_tracked(exc.logged, params.profile)
        raise
    _print_tracked(results, params.profile)
    if not results:
        print(f"no finished results of profile {params.profile!r} under {args.root}: run the pipeline first")
    return 0


def _print_tracked(results: dict[str, dict[str, str]], profile: str) -> None:
    """One line per case/model (and the report) of :func:`physml.stages.track_results`."""
    from physml import tracking  # after the case and model are checked: a typo is refused before MLflow loads

    for pair, runs in results.items():
        if pair == "report":
            print(f"report: MLflow run {runs['report']} of experiment {tracking.REPORT_EXPERIMENT} holds "
                  f"reports/{profile}, logged now or before")
            continue
        print(f"{pair}: {len(runs)} MLflow runs hold its results, logged now or before ({', '.join(runs)})")


def _add_track_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "track", help="log to MLflow every finished result (metrics, seed studies, registered "
                                     "networks, the report) that no run holds yet, e.g. the results `dvc repro` "
                                     "found up to date or restored from its cache (data/ and models/ must be there)")
    p.add_argument("--case", default=None, help="only this case (default: every case of the matrix)")
    p.add_argument("--model", default=None, help="only this model (default: every model of the matrix)")
    _add_common(p)
    p.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    p.set_defaults(func=_cmd_track)


def _cmd_report(args: argparse.Namespace) -> int:
    from physml import stages

    print(stages.report(_load(args), args.root))
    return 0


def _add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "report", help="write reports/<profile>/index.md: tables, figures, quality bars, versions")
    _add_common(p)
    p.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    p.set_defaults(func=_cmd_report)


def _cmd_serve(args: argparse.Namespace) -> int:
    from physml import stages, tracking

    params = _load(args)
    stages.check_model(params, args.case, args.model)
    if args.version is not None and args.version < 1:
        raise ValueError(f"--version must be a registered version number (>= 1), got {args.version}")
    name = tracking.registered_model_name(args.case, args.model, params.profile)
    uri = tracking.tracking_uri(project=tracking.store_project(args.root))
    which = args.alias if args.version is None else args.version
    argv, env, version = tracking.serve_command(name, which, args.host, args.port, uri=uri)
    print(f"serving {name} version {version} at http://{args.host}:{args.port}/invocations (tracking store {uri}); "
          f"inputs and params: physml/serving.py", file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)  # the server replaces this process, so Ctrl-C and signals reach it


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = _subparser(sub, "serve", help="serve a registered network over REST with `mlflow models serve` (POST "
                                     "/invocations; a black box conserves the given mass by default)")
    p.add_argument("--case", required=True, help="case name from params.yaml")
    p.add_argument("--model", required=True, help="model of the case's matrix group (anp, ensemble, fno)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--alias", default="champion", help="registry alias to serve (default: champion)")
    which.add_argument("--version", type=int, default=None, help="version number to serve instead of an alias")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=5001, help="port (default: 5001)")
    _add_common(p)
    p.add_argument("--root", type=Path, default=Path("."), help="project root whose MLflow store holds the model "
                                                               "(default: .; PHYSML_TRACKING_URI wins)")
    p.set_defaults(func=_cmd_serve)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_generate_parser,
    _add_verify_parser,
    _add_train_parser,
    _add_constrain_parser,
    _add_evaluate_parser,
    _add_seed_study_parser,
    _add_track_parser,
    _add_report_parser,
    _add_serve_parser,
]


def build_parser() -> argparse.ArgumentParser:
    from physml import __version__

    parser = argparse.ArgumentParser(prog="physml", description="Physics-constrained ML for PDEs: ProbConserv and BOON.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def complete_commands(message: str, params: str | Path | None = None, root: str | Path | None = None) -> str:
    """``message`` with each command it suggests (`` `physml <command> …` ``) given ``--params`` and ``--root``
    where they are not the defaults (``params.yaml`` and ``.`` of the working directory) and that command takes
    them, so that it remakes what was refused in the same place and from the same params file. The CLI's
    refusals (:func:`_completed`) and the Prefect flow's task failures go through it."""
    given = [(flag, value) for flag, value, default in (("--params", params, "params.yaml"), ("--root", root, "."))
             if value is not None and Path(value).resolve() != Path(default).resolve()]
    if not given:
        return message
    options = _options_by_command()

    def complete(match: re.Match[str]) -> str:
        command, rest = match.group(1), match.group(2)
        takes = options.get(command, frozenset())
        extra = "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in given
                        if flag in takes and f"{flag} " not in rest)
        return f"`physml {command}{rest}{extra}`"

    return re.sub(r"`physml ([a-z-]+)([^`]*)`", complete, message)


@functools.cache
def _options_by_command() -> dict[str, frozenset[str]]:
    """The option strings each subcommand takes (``{"train": {"--case", "--params", …}, …}``), read from the
    parser argparse builds (its subparsers' private ``_option_string_actions``: argparse has no public way)."""
    parser = build_parser()
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: frozenset(sub._option_string_actions) for name, sub in commands.items()}


def _completed(message: str, args: argparse.Namespace) -> str:
    """``message`` completed with this run's own ``--params`` and ``--root`` (:func:`complete_commands`)."""
    return complete_commands(message, getattr(args, "params", None), getattr(args, "root", None))


def _learning_rate_key(args: argparse.Namespace) -> str:
    """The params.yaml key of the learning rate the failed training used: the case's override where it sets
    one (``models.<model>.cases.<case>.<profile>.train.lr``), else the profile's (``models.<model>.<profile>.
    train.lr``); the placeholder when the command names no case and model."""
    case, model = getattr(args, "case", None), getattr(args, "model", None)
    try:
        params = _load(args)
        per_profile = getattr(params.models, model)
    except (ValueError, OSError, AttributeError, TypeError):
        return "models.<model>.<profile>.train.lr"
    over = per_profile.cases.get(case)
    override = (over[params.profile] if over is not None else None) or {}
    if "lr" in (override.get("train") or {}):
        return f"models.{model}.cases.{case}.{params.profile}.train.lr"
    return f"models.{model}.{params.profile}.train.lr"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``physml``; bad input (ValueError), a file that cannot be read or written (OSError), a
    training that diverged (FloatingPointError) or an error of the MLflow store → one line on stderr (a command
    it suggests completed with this run's ``--params`` and ``--root``: :func:`_completed`) and exit code 2;
    Ctrl-C → one line and 130; SIGTERM → one line and 143 (:class:`Terminated`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _stage_threads(args), _terminated_as_exception():
            return int(args.func(args))
    except (ValueError, OSError) as exc:
        print(f"physml {args.command}: error: {_completed(str(exc), args)}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # on a line of its own: a progress bar may still hold the last one
        print(f"\nphysml {args.command}: error: {exc} (lower the learning rate, {_learning_rate_key(args)}, or "
              "check the data)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nphysml {args.command}: interrupted; run the same command again (a training resumes from its "
              "last checkpoint)", file=sys.stderr)
        return 130
    except Terminated:
        print(f"\nphysml {args.command}: terminated (SIGTERM); nothing half-written was kept and its MLflow run, "
              "if one was open, ended FAILED; run the same command again (a training resumes from its last "
              "checkpoint)", file=sys.stderr)
        return 143
    except Exception as exc:
        mlflow_errors = sys.modules.get("mlflow.exceptions")  # loaded only by the commands that track
        if mlflow_errors is None or not isinstance(exc, mlflow_errors.MlflowException):
            raise
        print(f"physml {args.command}: error: MLflow: {exc.message}", file=sys.stderr)
        return 2


class Terminated(BaseException):
    """SIGTERM, raised where the command is (:func:`_terminated_as_exception`): a cancelled Prefect run, an
    evicted pod or ``kill`` unwinds the command as Ctrl-C does instead of ending the process on the spot."""


@contextmanager
def _terminated_as_exception() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` in the main thread, so that what it was
    writing is unwound: atomic writes drop their partial file (:func:`physml.atomic.atomic_path`) and an open
    MLflow run ends FAILED (:func:`physml.tracking.start_run`) rather than staying RUNNING. The previous handler
    comes back afterwards; off the main thread (signals cannot be caught there) nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _stage_threads(args: argparse.Namespace) -> Iterator[None]:
    """A stage command runs alone (as a ``dvc repro`` stage does): let it use ``--threads`` torch threads
    through ``PHYSML_TORCH_THREADS``, restored afterwards. The default is fixed (not "every core")
    because torch's reductions, hence trained weights and reported numbers, depend on the thread count."""
    if not hasattr(args, "threads"):  # before importing threads, which loads torch
        yield
        return
    from physml import threads

    n = threads.default_threads() if args.threads is None else args.threads
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    old = os.environ.get(threads.ENV)
    os.environ[threads.ENV] = str(n)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(threads.ENV, None)
        else:
            os.environ[threads.ENV] = old


if __name__ == "__main__":
    sys.exit(main())
