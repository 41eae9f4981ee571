"""`rlhf-train`: run a preset headless, or check, describe and create presets.

    rlhf-train PRESET.toml [--set section.key=value]... [--run-dir DIR | --resume [RUN]]
    rlhf-train check PRESET.toml... [--set ...] [--json]
    rlhf-train schema [--markdown]
    rlhf-train new NAME [--force]
    rlhf-train runs [--root runs] [--json]
    rlhf-train watch [RUN|latest] [--root runs] [--json] [--since SEQ] [--no-follow]
    rlhf-train stop RUN [--root runs] [--wait SECONDS]
    rlhf-train serve-rm (--task NAME | --function FILE.py:NAME | --model DIR) [--host H] [--port P]

Exit codes: 0 success, 2 invalid preset or usage, 1 a run that failed. Bad input never produces a
traceback. This module imports no torch/ray/deepspeed/vllm; the trainer is imported only to run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rlhf_train.config.issues import PresetIssue
from rlhf_train.config.loader import LoadResult, check_preset

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
SUBCOMMANDS = ("check", "schema", "new", "runs", "watch", "stop", "serve-rm")


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a preset key (value parsed as TOML); OpenRLHF flag names are accepted, "
                             "e.g. --set n_samples_per_prompt=8")


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlhf-train", description="Run an RLHF preset headless. Other commands: "
                                       + ", ".join(SUBCOMMANDS) + " (rlhf-train COMMAND --help).")
    parser.add_argument("preset", help="preset TOML file (see presets/)")
    _add_set(parser)
    parser.add_argument("--run-dir", help="run directory (default: <run.output_dir>/<run.name>-<UTC time>)")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="RUN",
                        help="continue a stopped, failed or lost run in its own directory from its last complete "
                             "checkpoint: a run directory, a run id under <run.output_dir>, or the newest run there "
                             "(default); the preset may differ only in harmless keys")
    return parser


def _sub_parser(command: str) -> argparse.ArgumentParser:
    if command == "check":
        parser = argparse.ArgumentParser(prog="rlhf-train check",
                                         description="Validate presets and print the plan: placement, batch "
                                                     "maths, memory. Exit 0 valid, 2 invalid.")
        parser.add_argument("presets", nargs="+", metavar="PRESET")
        _add_set(parser)
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    elif command == "runs":
        parser = argparse.ArgumentParser(prog="rlhf-train runs", description="List runs: status, step, last reward, "
                                                                           "age. A running run whose process is gone "
                                                                           "is shown as lost.")
        parser.add_argument("--root", default="runs", help="directory holding run directories (default: runs)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    elif command == "watch":
        parser = argparse.ArgumentParser(prog="rlhf-train watch", description="Follow a run: live while it runs, "
                                                                            "replayed from its events once it ended.")
        parser.add_argument("run", nargs="?", default="latest", help="run directory, run id or 'latest' (default)")
        parser.add_argument("--root", default="runs", help="directory holding run directories (default: runs)")
        parser.add_argument("--json", action="store_true", help="raw events as NDJSON")
        parser.add_argument("--since", type=int, default=0, metavar="SEQ", help="only events after this seq")
        parser.add_argument("--no-follow", action="store_true", help="print what is recorded now and exit")
    elif command == "stop":
        parser = argparse.ArgumentParser(prog="rlhf-train stop", description="Ask a running run to stop gracefully: "
                                                                           "it finishes the current step, saves a "
                                                                           "checkpoint and exits with status stopped.")
        parser.add_argument("run", help="run directory, run id or 'latest'")
        parser.add_argument("--root", default="runs", help="directory holding run directories (default: runs)")
        parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                            help="wait up to this long for the run to end")
    elif command == "serve-rm":
        parser = argparse.ArgumentParser(prog="rlhf-train serve-rm",
                                         description="Serve a reward over HTTP with OpenRLHF's remote RM protocol "
                                                     "(POST {query, prompts, labels} -> {rewards}), for "
                                                     "[reward].kind = \"remote\". Runs until Ctrl-C or SIGTERM.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--task", help="a built-in task's verifier, e.g. arith")
        source.add_argument("--function", help="a reward function, path/to/file.py:name")
        source.add_argument("--model", help="a reward model: a local HF directory (or builtin:tiny)")
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, "
                                                                 "loopback only; 0.0.0.0 for every interface)")
        parser.add_argument("--port", type=int, default=5000, help="port (default: 5000; 0 = any free port)")
        parser.add_argument("--path", default="/get_reward", help="URL path (default: /get_reward)")
        parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                            help="reward model weight dtype (--model)")
    elif command == "schema":
        parser = argparse.ArgumentParser(prog="rlhf-train schema", description="Print the preset JSON Schema.")
        parser.add_argument("--markdown", action="store_true", help="the preset reference as Markdown instead")
    else:
        parser = argparse.ArgumentParser(prog="rlhf-train new",
                                         description="Write a commented preset with every key at its default.")
        parser.add_argument("name", help="preset name; writes NAME.toml (or NAME if it ends in .toml)")
        parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def format_issues(issues: list[PresetIssue], kind: str) -> list[str]:
    lines = []
    for issue in issues:
        head, _, fix = issue.render().partition(" Fix: ")
        lines.append(f"  {kind}: {head}")
        if fix:
            lines.append(f"    fix: {fix}")
    return lines


def _report(path: str, result: LoadResult) -> str:
    lines = [f"{path}: " + ("valid" if result.ok else f"{len(result.errors)} error{'s' * (len(result.errors) != 1)}")]
    lines += [f"  note: {n}" for n in result.notes]
    lines += format_issues(result.errors, "error")
    lines += format_issues(result.warnings, "warning")
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    from rlhf_train.config.plan import make_plan

    status = EXIT_OK
    documents = []
    for path in args.presets:
        result = check_preset(path, args.overrides)
        plan = make_plan(result.preset) if result.preset is not None else None
        status = max(status, EXIT_OK if result.ok else EXIT_INVALID)
        if args.json:
            documents.append({"preset": path, "valid": result.ok, "notes": result.notes,
                              "errors": [e.as_json() for e in result.errors],
                              "warnings": [w.as_json() for w in result.warnings],
                              "plan": plan.as_json() if plan else None})
        else:
            print(_report(path, result))
            if plan:
                print("\n" + plan.render() + "\n")
    if args.json:
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2, default=str))
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    if args.markdown:
        from rlhf_train.config.reference import preset_reference_markdown

        print(preset_reference_markdown())
    else:
        from rlhf_train.config.schema import Preset

        print(json.dumps(Preset.model_json_schema(), indent=2))
    return EXIT_OK


def cmd_new(args: argparse.Namespace) -> int:
    from rlhf_train.config.schema import Preset, RunConfig
    from rlhf_train.config.writer import preset_to_toml

    path = Path(args.name if args.name.endswith(".toml") else f"{args.name}.toml")
    if path.exists() and not args.force:
        print(f"error: {path} exists; pass --force to overwrite it.", file=sys.stderr)
        return EXIT_INVALID
    stem = path.stem
    try:
        preset = Preset(run=RunConfig(name=stem))
    except ValueError:
        print(f"error: {stem!r} is not a valid run name (letters, digits, '.', '_', '-').", file=sys.stderr)
        return EXIT_INVALID
    path.write_text(preset_to_toml(preset, commented=True, title=f"rlhf-train preset {stem} (every key at its "
                                                                  "default; delete what you do not change)"))
    print(f"wrote {path}; check it with: rlhf-train check {path}")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from rlhf_train.telemetry.runs import list_runs, render_table

    runs = list_runs(Path(args.root))
    print(json.dumps([r.as_json() for r in runs], indent=2) if args.json else render_table(runs))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from rlhf_train.errors import RunError
    from rlhf_train.telemetry.client import iter_events, resolve_run
    from rlhf_train.telemetry.watch import watch

    try:
        run_dir = resolve_run(args.run, args.root)
        view = watch(iter_events(run_dir, since_seq=args.since, follow=not args.no_follow), as_json=args.json)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_FAILED if view.status == "failed" else EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    from rlhf_train.errors import RunError
    from rlhf_train.telemetry.client import resolve_run
    from rlhf_train.telemetry.control import request_stop, wait_for_end

    try:
        run_dir = resolve_run(args.run, args.root)
        pid = request_stop(run_dir)
        print(f"asked run {run_dir.name} (pid {pid}) to stop after its current step")
        if args.wait > 0:
            status = wait_for_end(run_dir, args.wait)
            print(f"run {run_dir.name}: {status}")
            return EXIT_OK if status != "running" else EXIT_FAILED
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def cmd_serve_rm(args: argparse.Namespace) -> int:
    from rlhf_train.errors import user_errors
    from rlhf_train.rewards.server import make_scorer, serve

    try:
        name, scorer = make_scorer(task=args.task or "", function=args.function or "", model=args.model or "",
                                   dtype=args.dtype)
        serve(scorer, name, host=args.host, port=args.port, path=args.path)
    except (*user_errors(), OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    result = check_preset(args.preset, args.overrides)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if not result.ok:
        print(_report(args.preset, result), file=sys.stderr)
        return EXIT_INVALID
    for line in format_issues(result.warnings, "warning"):
        print(line, file=sys.stderr)
    if args.resume is not None and args.run_dir:
        print("error: --run-dir and --resume both name a run directory; give --resume RUN_DIR alone",
              file=sys.stderr)
        return EXIT_INVALID
    from rlhf_train.errors import RunError
    from rlhf_train.runner import run_preset

    try:
        return run_preset(result.preset, run_dir=args.run_dir, resume=args.resume)
    except RunError as exc:  # a run that may not be resumed: nothing was started
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            command = argv.pop(0)
            args = _sub_parser(command).parse_args(argv)
            return {"check": cmd_check, "schema": cmd_schema, "new": cmd_new, "runs": cmd_runs,
                    "watch": cmd_watch, "stop": cmd_stop, "serve-rm": cmd_serve_rm}[command](args)
        return cmd_run(_run_parser().parse_args(argv))
    except BrokenPipeError:  # `rlhf-train check --json | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
