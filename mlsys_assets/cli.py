"""`mlsys`: land data, run the demo, start the UIs, serve the champion, print the settings."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mlsys_assets.instance import prepare_dagster_home
from mlsys_assets.settings import mlsys_home, setting


def cmd_land(args: argparse.Namespace) -> int:
    from mlsys_assets.core.landing import land_default_data
    from mlsys_assets.resources import LandingZone
    from mlsys_assets.systems import system_named

    landing = LandingZone.from_env()
    system = system_named(args.system)
    written = land_default_data(system, landing.path, args.start, args.end)
    for source, count in written.items():
        print(f"landed {count} new or changed {source} files in {Path(landing.path) / system.name / source}")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from mlsys_assets.settings import settings_rows

    rows = settings_rows()
    if args.markdown:
        print("| variable | default | meaning |\n| --- | --- | --- |")
        for env, default, meaning in rows:
            print(f"| `{env}` | `{default}` | {meaning} |")
        return 0
    for env, default, meaning in rows:
        print(f"{env:34} {default:32} {meaning}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    prepare_dagster_home()
    root = Path(__file__).resolve().parent.parent
    command = [str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(args.port)]
    if (root / "workspace.yaml").exists():
        command += ["-w", str(root / "workspace.yaml")]
    else:
        command += ["-m", "mlsys_assets.definitions"]
    print(f"Dagster UI on http://127.0.0.1:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})", flush=True)
    os.execv(command[0], command)
    return 0


def cmd_dagster_tool(args: argparse.Namespace) -> int:
    """`mlsys dg ...` and `mlsys dagster ...`: Dagster's own CLIs on the project's instance, its dagster.yaml written
    first. Without DAGSTER_HOME they run on a throwaway one; a DAGSTER_HOME in a `.env` file would have to be absolute
    and would override the environment's, whatever MLSYS_HOME says."""
    prepare_dagster_home()
    if sys.prefix != sys.base_prefix:
        os.environ.setdefault("VIRTUAL_ENV", sys.prefix)  # dg warns when the project's .venv is not the active one
    command = [str(Path(sys.executable).parent / args.command), *args.tool_args]
    os.execv(command[0], command)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mlsys_assets.demo import run_demo
    from mlsys_assets.systems import system_named

    prepare_dagster_home()
    system = system_named(args.system)
    stretch = system.demo or (system.partitions.start, system.partitions.end)
    if args.full_year:
        start, end = system.partitions.start, system.partitions.end
    else:
        start = args.start or setting("MLSYS_DEMO_START") or stretch[0]
        end = args.end or setting("MLSYS_DEMO_END") or stretch[1]
    return run_demo(start=start, end=end, system_name=system.name)


def cmd_rollback(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from mlsys_assets.definitions import build_defs
    from mlsys_assets.systems import system_named

    prepare_dagster_home()
    system = system_named(args.system).name
    result = build_defs().resolve_job_def(f"{system}_rollback_champion").execute_in_process(
        instance=DagsterInstance.get(), raise_on_error=False,
        run_config={"ops": {f"{system}_rollback_champion_op": {"config": {"reason": args.reason}}},
                    "loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        tags={"mlsys/launched_by": "cli"})
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            meta = event.event_specific_data.materialization.metadata
            print(f"@champion moved from version {meta['previous_champion'].value} to "
                  f"{meta['champion_version'].value}: {args.reason}")
        if event.event_type_value == "STEP_FAILURE":
            print(f"rollback failed: {event.event_specific_data.error.message.strip()}", file=sys.stderr)
    return 0 if result.success else 1


def cmd_mlflow_ui(args: argparse.Namespace) -> int:
    from mlsys_assets.resources import MlflowStore

    store = MlflowStore.from_env()
    uri = store.store_uri()  # the profile's store; it may hold a password: passed by environment, never printed
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_BACKEND_STORE_URI"] = uri
    artifacts = str(Path(store.store_dir) / "artifacts")  # never ./mlruns or ./mlartifacts of the current directory
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    command = [str(bin_dir / "mlflow"), "ui", "--host", "127.0.0.1", "--port", str(args.port),
               "--default-artifact-root", artifacts, "--artifacts-destination", artifacts]
    shown = uri.split("://", 1)[0] + "://" + uri.rsplit("@", 1)[-1] if "@" in uri else uri
    print(f"MLflow UI on http://127.0.0.1:{args.port} ({shown})", flush=True)
    os.execv(command[0], command)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Every declared system's scoring service (`core.server.command`), a route per system."""
    from mlsys_assets.core.server.command import main

    argv = [*(f"--system={name}" for name in args.system or ()), f"--host={args.host}"]
    return main(argv + ([f"--port={args.port}"] if args.port is not None else []))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlsys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    land = sub.add_parser("land", help="write one file per day per source into the landing zone")
    land.add_argument("start", help="first day, e.g. 2013-01-01")
    land.add_argument("end", nargs="?", help="last day (inclusive); defaults to START")
    land.add_argument("--system", help="the declared system whose shipped data to land (default: the first)")
    land.set_defaults(func=cmd_land)
    demo = sub.add_parser("demo", help="land days of 2013 and run the pipeline over them")
    demo.add_argument("--start", help="first day (default: MLSYS_DEMO_START, else the system's declared demo)")
    demo.add_argument("--end", help="last day (default: MLSYS_DEMO_END, else the system's declared demo)")
    demo.add_argument("--full-year", action="store_true",
                      help="replay the system's whole partition range (the default system's year: about 18 minutes)")
    demo.add_argument("--system", help="the declared system to replay (default: the first declared)")
    demo.set_defaults(func=cmd_demo)
    dev = sub.add_parser("dev", help="start the Dagster UI on 127.0.0.1 over MLSYS_HOME")
    dev.add_argument("--port", type=int, default=int(setting("MLSYS_UI_PORT")))
    dev.set_defaults(func=cmd_dev)
    for tool in ("dg", "dagster"):
        wrapped = sub.add_parser(tool, add_help=False, help=f"run `{tool} ARGS` on the project's Dagster instance "
                                                             "(DAGSTER_HOME, else MLSYS_HOME/dagster)")
        wrapped.add_argument("tool_args", nargs=argparse.REMAINDER, help=f"the arguments of `{tool}`")
        wrapped.set_defaults(func=cmd_dagster_tool)
    rollback = sub.add_parser("rollback", help="move @champion back to the previous champion")
    rollback.add_argument("--reason", required=True, help="why (recorded in promotion_history)")
    rollback.add_argument("--system", help="the declared system whose champion to roll back (default: the first)")
    rollback.set_defaults(func=cmd_rollback)
    mlflow_ui = sub.add_parser("mlflow", help="start the MLflow UI on 127.0.0.1 over the embedded store")
    mlflow_ui.add_argument("--port", type=int, default=5000)
    mlflow_ui.set_defaults(func=cmd_mlflow_ui)
    serve = sub.add_parser("serve", help="serve a system's @champion over HTTP (MLflow's scoring protocol)")
    serve.add_argument("--system", action="append", help="a declared system to serve (repeat for several; default: "
                                                         "every declared system, the first also at /invocations)")
    serve.add_argument("--port", type=int, help="port (default: MLSYS_SERVE_PORT or 5001)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: local only)")
    serve.set_defaults(func=cmd_serve)
    settings = sub.add_parser("settings", help="print every setting, its environment variable and default")
    settings.add_argument("--markdown", action="store_true", help="as the README's Markdown table")
    settings.set_defaults(func=cmd_settings)
    return parser


def _min_free_mb() -> float:
    from mlsys_assets.resources import Warehouse

    return Warehouse.from_env().min_free_mb


WRITES_HOME = ("land", "demo", "dev", "dg", "dagster", "rollback", "serve")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command; a full disk or an unwritable MLSYS_HOME ends it with one sentence on stderr (exit 1)."""
    from mlsys_assets.core.storage import as_storage_error, ensure_writable

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["dg"], ["dagster"]):  # every later argument is the tool's, leading options such as --help too
        args = argparse.Namespace(command=argv[0], tool_args=argv[1:], func=cmd_dagster_tool)
    else:
        args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        if args.command in WRITES_HOME:
            ensure_writable(mlsys_home(), _min_free_mb())
        status = args.func(args)
    except Exception as exc:
        error = as_storage_error(exc, getattr(exc, "filename", None) or mlsys_home())
        if error is None:
            raise
        print(f"mlsys {args.command}: {error}", file=sys.stderr)
        return 1
    if args.command in ("land", "demo"):
        print(f"done in {time.monotonic() - started:.1f} s (state in {mlsys_home()})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
