"""The ``deepclust`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corekit import recipe as rc
from corekit.errors import UserError, did_you_mean
from corekit.plugins import Plugins, get_plugins
from corekit.registry import KINDS
from corekit.run_files import interrupted_note, public_command, public_data_name, run_folders
from corekit.run_folder import RunFolder, check_output_dir
from corekit.warning_lines import one_line_warnings

if TYPE_CHECKING:
    from corekit.auto import Choice


def cmd_plugins(args: argparse.Namespace, plugins: Plugins) -> int:
    if args.json:
        print(json.dumps([p.as_json() for p in plugins.info], indent=2))
        return 0
    for p in plugins.info:
        version = p.version or "-"
        print(f"{p.name:<12} {version:<8} {p.status:<8} {p.distribution or p.module}")
        if p.error:
            print(f"    error: {p.error}")
        for kind, names in p.components.items():
            print(f"    {kind}: {', '.join(names)}")
    return 0


def cmd_components(args: argparse.Namespace, plugins: Plugins) -> int:
    """List components (importing none of them, unless ``--json`` asks for their options and
    needs), or describe one in full."""
    from corekit.describe import brief, describe, render

    kinds = [args.kind] if args.kind else [k for k in KINDS if k != "recipe"]
    for kind in kinds:
        if kind not in KINDS:
            raise UserError(f"unknown kind {kind!r}; {did_you_mean(kind, KINDS)}")
    if args.name:
        if not args.kind:
            raise UserError("name a kind too: deepclust components KIND NAME")
        entries = [plugins.get(args.kind, args.name)]
    else:
        entries = [e for kind in kinds for e in plugins.registry.entries(kind)]
    infos = [(describe if args.json or args.name else brief)(entry) for entry in entries]
    if args.json:
        print(json.dumps(infos, indent=2, default=str))
        return 0
    if args.name:
        print("\n".join(render(infos[0])))
        return 0
    for kind in kinds:
        print(f"{kind} components:")
        for info in (i for i in infos if i["kind"] == kind):
            alias = f" (aliases: {', '.join(info['aliases'])})" if info["aliases"] else ""
            summary = info["summary"]
            summary = summary if len(summary) <= 80 else summary[:79] + "…"
            print(f"  {info['qualified']:<34}{alias} {summary}")
    return 0


def cmd_recipes(args: argparse.Namespace, plugins: Plugins) -> int:
    from corekit import auto

    print(f"{auto.RECIPE:<28} presets: {'those of the recipe it picks':<40} {auto.summary()}")
    for entry in plugins.registry.entries("recipe"):
        try:  # presets of the recipe and of every recipe it extends
            raw = rc.resolve_raw(str(entry.obj), plugins.find_recipe)
        except UserError as exc:
            print(f"{entry.qualified:<28} cannot be read: {exc}")
            continue
        presets = ", ".join(raw.get("presets", {})) or "-"
        print(f"{entry.qualified:<28} presets: {presets:<40} {raw.get('description', '')}")
    return 0


def _resolve(args: argparse.Namespace, plugins: Plugins) -> rc.Recipe:
    from corekit import auto as preset

    choice = _auto_choice(args.recipe, plugins)

    def auto(base: rc.Raw, selected: rc.Raw, data: str | None) -> rc.Raw:
        if choice is not None:
            selected = preset.with_choice(selected, choice)
        if data is None or not preset.applies(base, data):
            return selected
        from corekit.data import load_dataset  # torch: only to look at the images
        from corekit.engine.devices import resolve_device

        device = resolve_device(getattr(args, "device", None)
                                or str(selected.get("train", {}).get("device", "auto")))
        images = load_dataset(data, loaders=plugins.datasets())
        return preset.with_auto_preset(selected, images, device)

    name, chosen = (choice.recipe, list(choice.sets)) if choice else (args.recipe, [])
    return rc.resolve(name, plugins.find_recipe, args.data, args.set or [], auto, chosen)


def _auto_choice(name: str, plugins: Plugins) -> Choice | None:
    """What the ``auto`` recipe runs on this machine (a ``corekit.auto.Choice``) when ``name``
    is ``auto``, else None. A plugin's recipe also called ``auto`` keeps its qualified name,
    and the choice's line names it."""
    from corekit import auto

    if name != auto.RECIPE:
        return None
    registry = plugins.registry
    own = registry.get("recipe", name).qualified if registry.has("recipe", name) else None
    return auto.choose(shadowed=own)


def cmd_show(args: argparse.Namespace, plugins: Plugins) -> int:
    run_dir = Path(args.recipe)
    if run_dir.is_dir():
        from corekit.runner.show import describe_run

        for folder in run_folders(run_dir, "show"):
            if folder != run_dir:
                print(f"== {folder.name} ==")
            print("\n".join(describe_run(folder)))
        return 0
    recipe = _resolve(args, plugins)
    if "auto" in recipe.raw:
        print(f"# {recipe.raw['auto']['line']}")
    print(rc.to_toml(recipe.raw), end="")
    return 0


def cmd_check(args: argparse.Namespace, plugins: Plugins) -> int:
    from corekit.composer import describe_labelers, describe_streams, describe_views
    from corekit.engine.devices import resolve_device
    from corekit.runner import DataCache, check_recipe

    recipe = _resolve(args, plugins)
    cache = DataCache(resolve_device(recipe.stages[0].train.device), plugins.datasets())
    composed = check_recipe(recipe, plugins, cache)
    for c in composed:
        losses = ", ".join(w.name for w in c.losses)
        state = ", ".join(f"{n} ({t})" for n, t in c.state_types.items()) or "-"
        train = c.stage.train
        frozen = f"; frozen: {', '.join(train.freeze)} (BatchNorm {train.freeze_bn})" \
            if train.freeze else ""
        print(f"stage {c.stage.name}: {len(c.train_set)} images of {c.train_set.name}, "
              f"{c.n_clusters} clusters; losses: {losses}; state: {state}; "
              f"views: {describe_views(c.stage.augment)}; "
              f"streams: {describe_streams(train)}; "
              f"labelers: {describe_labelers(c)}{frozen}")
    print(f"ok: recipe {recipe.name!r} composes ({len(composed)} stage(s))")
    return 0


def under_torchrun() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def cmd_train(args: argparse.Namespace, plugins: Plugins) -> int:
    """``train``; under torchrun (``WORLD_SIZE`` > 1) inside the process group, which it
    joins from torchrun's environment and leaves on exit, errors included."""
    if not under_torchrun():
        return _train(args, plugins)
    from corekit import distributed
    from corekit.recipe.durations import parse_budget

    if args.device:
        raise UserError(f"--device {args.device}: under torchrun each process trains on the "
                        "device of its LOCAL_RANK (cuda:LOCAL_RANK, else cpu); drop --device")
    if args.seeds > 1:
        raise UserError(f"--seeds {args.seeds} is not supported under torchrun yet; run one "
                        "seed per torchrun (--set train.seed=S)")
    timeout = timedelta(seconds=parse_budget(args.dist_timeout, "--dist-timeout"))
    with distributed.process_group(timeout):
        args.set = [*(args.set or []), f'train.device="{distributed.local_device()}"']
        return _train(args, plugins)


def _on_main(check: Callable[[], None]) -> None:
    """Run ``check`` (which raises ``UserError``); under torchrun on rank 0 alone, its error
    raised on every rank."""
    from corekit import distributed

    if not distributed.is_distributed():
        check()
        return
    problem = None
    if distributed.is_main():
        try:
            check()
        except UserError as exc:
            problem = str(exc)
    problem = distributed.broadcast(problem)
    if problem is not None:
        raise UserError(problem)


def _train(args: argparse.Namespace, plugins: Plugins) -> int:
    from corekit import distributed
    from corekit.baseline import baseline_line
    from corekit.runner import train, train_seeds

    overrides = list(args.set or [])
    if args.device:
        overrides.append(f'train.device="{args.device}"')
    if args.budget:
        rc.parse_budget(args.budget, "--budget")
        overrides.append(f'train.budget="{args.budget}"')
    if args.k is not None:
        if args.k < 1:
            raise UserError(f"--k {args.k}: the number of clusters must be at least 1")
        overrides.append(f"data.n_clusters={args.k}")
    args.set = overrides
    if args.out:
        _on_main(lambda: check_output_dir(Path(args.out), args.resume, args.overwrite,
                                          args.stage))
    recipe = _resolve(args, plugins)
    data = public_data_name(recipe.stages[-1].data.name).replace(":", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = distributed.broadcast(
        Path(args.out) if args.out else Path("runs") / f"{recipe.name}-{data}-{stamp}")
    main = distributed.is_main()
    progress = not args.no_progress and sys.stderr.isatty()
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: train at least one seed")
    if args.seeds > 1 and args.stage:
        raise UserError("--stage reruns one stage of one run; drop --seeds")
    if args.stage and not args.out:
        raise UserError("--stage reruns a stage of an existing run: give its --out DIR")
    command = public_command(["train", *args.argv])
    if not args.out:
        _on_main(lambda: check_output_dir(out, args.resume, args.overwrite, args.stage))
    try:
        with RunFolder.open(out, command) if main else contextlib.nullcontext() as folder:
            for note in folder.notes if main else []:
                print(f"deepclust: {note}", file=sys.stderr)
            if args.overwrite and main:
                folder.remove_run_files()
            distributed.barrier()  # the others read the folder once rank 0 holds it
            if args.seeds > 1:
                final = train_seeds(recipe, out, plugins, args.seeds, progress=progress,
                                    command=command, resume=args.resume)
            else:
                final = train(recipe, out, plugins, resume=args.resume, progress=progress,
                              only=args.stage, command=command)
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"deepclust: {what}; {interrupted_note(out)}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    if not main:
        return 0
    print(_metrics_line(final))
    baseline = baseline_line(final)
    if baseline:
        print(baseline)
    print(f"run directory: {out}  (final.json, metrics.jsonl, report.md)")
    return 0


def _metrics_line(final: dict) -> str:
    parts = []
    for key in ("nmi", "acc", "ari"):
        if key in final:
            std = final.get(f"{key}_std")
            spread = f" ± {std:.4f}" if std is not None else ""
            parts.append(f"{key.upper()} {final[key]:.4f}{spread}")
    return "  ".join(parts) if parts else "no labels: metrics not computed"


def cmd_evaluate(args: argparse.Namespace, plugins: Plugins) -> int:
    from corekit.runner import evaluate_run

    result = evaluate_run(Path(args.run_dir), plugins)
    print(_metrics_line(result))
    print(json.dumps(result, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace, plugins: Plugins) -> int:
    from corekit import metrics
    from corekit.assign import write_assignments
    from corekit.data import load_dataset
    from corekit.predict import load_trained, predict
    from corekit.write_targets import check_target, writing
    from corekit.written import record, refuse_foreign

    run_dir = Path(args.run_dir)
    given = Path(args.out) if args.out else None
    if given is not None:
        check_target(given, "--out", False, "give --out the name of a new CSV file")
    model = load_trained(run_dir, plugins)
    data = load_dataset(args.data, loaders=plugins.datasets())
    out = given or run_dir / "predictions" / f"{data.name}.csv"
    refuse_foreign([out], "predict", "give --out a new file name, or move that file away")
    cluster, confidence = predict(model, data)
    with writing("give --out a file in a folder you can write"):
        record([write_assignments(out, cluster, confidence, data.names, data.labels)],
               "predict")
    k = int(model.data["n_clusters"])
    used = k - int(metrics.cluster_stats(cluster, k)["empty_clusters"])
    print(f"{len(data)} images of {data.name} -> {used} of {k} clusters; written to {out}")
    if data.labels is not None:
        print(_metrics_line(metrics.evaluate(data.labels, cluster, k)))
    return 0


def cmd_export(args: argparse.Namespace, plugins: Plugins) -> int:
    from corekit.predict import EXPORT_FILES, export, load_trained
    from corekit.write_targets import check_target, writing
    from corekit.written import record, refuse_foreign

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "export"
    check_target(out, "--out", True, "export writes a folder: give --out a new folder")
    refuse_foreign([out / name for name in EXPORT_FILES], "export",
                   "give --out a new folder, or move those files away")
    model = load_trained(run_dir, plugins)
    with writing("give --out a folder you can write"):
        record(export(model, run_dir, out), "export")
    print(f"exported {out / EXPORT_FILES[0]} (with {' and '.join(EXPORT_FILES[1:])})")
    return 0


def cmd_report(args: argparse.Namespace, plugins: Plugins) -> int:
    from corekit.report import warn, write_markdown
    from corekit.report_html import write_html_report
    from corekit.write_targets import writing

    for folder in run_folders(Path(args.run_dir), "report"):
        with writing("deepclust report writes into the run folder: copy the run folder where "
                     f"you can write and report on the copy (cp -r {folder} COPY && deepclust "
                     "report COPY)"):
            made = write_html_report(folder, plugins)
            write_markdown(folder, html=True)
        print(f"wrote {made.path} in {made.seconds:.1f} s")
        for title, why in made.missing:
            print(f"  not in the report: {title}: {why}")
        warn(made)
    return 0


def cmd_new_plugin(args: argparse.Namespace, plugins: Plugins) -> int:
    from corekit.scaffold import new_plugin

    path = new_plugin(args.name, Path(args.dir), args.extras,
                      taken=[p.name for p in plugins.info])
    print(f"created {path}")
    print(f"next: pip install --no-build-isolation -e {path} && pytest {path} && "
          f"deepclust train {args.name} --data digits")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepclust", description="Deep image clustering toolkit.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("plugins", help="list installed plugins and what they register")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_plugins)
    sp = sub.add_parser("components", help="list registered components")
    sp.add_argument("kind", nargs="?", help=f"one of {', '.join(KINDS)}")
    sp.add_argument("name", nargs="?", help="one component: its options, needs and outputs")
    sp.add_argument("--json", action="store_true",
                    help="as JSON, with every component's options, needs and outputs")
    sp.set_defaults(func=cmd_components)
    sub.add_parser("recipes", help="list recipes").set_defaults(func=cmd_recipes)
    for name, func, text in (("show", cmd_show, "print the resolved recipe, or a run directory's "
                                               "decisions per stage"),
                             ("check", cmd_check, "validate and compose every stage, no "
                                                  "training (exit 0 or 2)"),
                             ("train", cmd_train, "train a recipe")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("recipe", help="recipe name or path to a .toml file" +
                        (" (or a run directory)" if name == "show" else ""))
        sp.add_argument("--data", help="digits, mnist, mnist:DIR, cifar10, cifar20, stl10, "
                                       "imagefolder:PATH (picks the recipe's preset)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set train.epochs=5")
        sp.set_defaults(func=func)
        if name == "train":
            sp.add_argument("--out", help="run directory (default runs/<recipe>-<data>-<time>)")
            sp.add_argument("--resume", action="store_true",
                            help="continue from --out's checkpoint")
            sp.add_argument("--overwrite", action="store_true",
                            help="replace the run that --out holds (its own files only)")
            sp.add_argument("--seeds", type=int, default=1, help="train N seeds, report mean ± std")
            sp.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
            sp.add_argument("--budget", help="wall-clock time of the run, e.g. 10m, 1h30m, "
                                             "90s or 90 (seconds): epochs and schedules are "
                                             "fitted (and re-fitted) to it; with --seeds N, "
                                             "per seed")
            sp.add_argument("--k", type=int, help="number of clusters (default: the data set's "
                                                  "class count, else estimated)")
            sp.add_argument("--no-progress", action="store_true", help="no progress bars")
            sp.add_argument("--dist-timeout", default="10m", metavar="DURATION",
                            help="under torchrun: how long a collective waits for the other "
                                 "processes before the run fails, e.g. 10m (default), 90s")
            sp.add_argument("--stage", metavar="NAME",
                            help="rerun stage NAME of --out's run from the saved outputs of "
                                 "the stages before it")
    sp = sub.add_parser("evaluate", help="re-evaluate a run directory's checkpoint")
    sp.add_argument("run_dir")
    sp.set_defaults(func=cmd_evaluate)
    sp = sub.add_parser("predict", help="assign new images with a trained run")
    sp.add_argument("run_dir")
    sp.add_argument("--data", required=True, help="the images, e.g. imagefolder:PATH")
    sp.add_argument("--out", help="CSV file (default RUN/predictions/<data>.csv)")
    sp.set_defaults(func=cmd_predict)
    sp = sub.add_parser("export", help="write a run's networks as safetensors plus its recipe")
    sp.add_argument("run_dir")
    sp.add_argument("--out", help="folder (default RUN/export)")
    sp.set_defaults(func=cmd_export)
    sp = sub.add_parser("report", help="rebuild a run's report: RUN/report/index.html "
                                       "(sample grids, confusion matrix, embedding, curves)")
    sp.add_argument("run_dir", help="a run directory (the --out of deepclust train)")
    sp.set_defaults(func=cmd_report)
    sp = sub.add_parser("new-plugin", help="scaffold a plugin of your own",
                        description="Write DIR/deepclust-plugin-NAME: an installable plugin "
                                    "with an example loss, a recipe, tests and a README.")
    sp.add_argument("name", help="plugin name: lower-case letters, digits and '_'")
    sp.add_argument("--dir", default=".", help="where to create it (default: here)")
    sp.add_argument("--with", dest="extras", action="append", metavar="head,state,clusterer",
                    help="also write an example head, state type and/or clusterer "
                         "(comma-separated or repeated)")
    sp.set_defaults(func=cmd_new_plugin)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers send), handled as an interrupt: checkpoints and locks are
    left as after Ctrl-C."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` in the main thread; the earlier
    handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise Terminated

    earlier = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, earlier)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv[1:] if argv and argv[0] == "train" else argv
    debug = args.debug or bool(os.environ.get("DEEPCLUST_DEBUG"))
    try:
        with terminate_as_interrupt(), \
                contextlib.nullcontext() if debug else one_line_warnings():
            return args.func(args, get_plugins())
    except UserError as exc:
        if debug:
            raise
        print(f"deepclust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"deepclust: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # `deepclust recipes | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
