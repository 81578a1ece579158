#!/usr/bin/env python
"""PathReview: serve a workspace (``--workspace DIR``) or the demo (``--demo``); precompute a cohort; run a job worker;
import and export annotations; write a case report; import a cohort from CSV files and a slide folder."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from core.annotations.cli import add_annotations_parser, run_annotations_command
from core.auth.accounts_cli import add_users_parser, run_users_command
from core.checks.cli import add_check_parser, run_check
from core.config import Settings, default_demo_dir
from core.errors import PathReviewError
from core.export.report_cli import add_report_parser, run_report
from core.imports.cli import add_import_parser, run_import
from core.jobs.cli import add_job_parsers, run_precompute, run_worker
from core.training.cli import add_model_parsers, run_fit, run_models_command, run_predict


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_dashboard.py", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve the review dashboard (the default command)")
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", nargs="?", const="prostate", choices=["prostate", "als"], default=None,
                        help="build a demo workspace if missing, then serve it: prostate (the default; slides, visits, reports) "
                             "or als (the ALS non-invasive-ventilation cohort, visits only)")
    source.add_argument("--workspace", type=Path, help="serve this workspace folder")
    serve.add_argument("--demo-dir", type=Path, default=None,
                       help=f"where --demo builds (default {default_demo_dir()}, or {default_demo_dir('als')} for als)")
    serve.add_argument("--build-only", action="store_true", help="with --demo: build the demo workspace, then exit")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8050)
    serve.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    serve.add_argument("--database-url", default=None, help="override the workspace's database URL")
    serve.add_argument("--threads", type=int, default=8, help="request threads")
    serve.add_argument("--secure-cookies", action="store_true", help="behind a TLS reverse proxy: Secure session cookies")
    serve.add_argument("--trusted-proxy", metavar="ADDR", default=None,
                       help="the reverse proxy's address (e.g. 127.0.0.1): only from it are X-Forwarded-For/-Proto believed, "
                            "so the audit trail and sign-in limits see each client's own address (see docs/deploy.md)")
    add_users_parser(sub)
    add_job_parsers(sub)
    add_annotations_parser(sub)
    add_report_parser(sub)
    add_import_parser(sub)
    add_model_parsers(sub)
    add_check_parser(sub)
    return parser


def proxy_options(trusted_proxy: str | None) -> dict:
    """waitress's options for one reverse proxy in front: the client address and scheme it forwards replace the
    connection's, and those headers are dropped from any other sender (a client cannot claim another address)."""
    if not trusted_proxy:
        return {"clear_untrusted_proxy_headers": True}
    return {"trusted_proxy": trusted_proxy, "trusted_proxy_count": 1, "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"},
            "clear_untrusted_proxy_headers": True}


def serve(args: argparse.Namespace) -> None:
    os.umask(0o077)  # the case store, caches and exports this process creates are its owner's only
    from core.device import compute_device, set_device_override
    from core.workspace import open_workspace

    set_device_override(args.device)
    root = args.workspace
    if args.demo:
        from core.demo.build import ALS_SPEC, DemoSpec, build_demo

        root = build_demo(args.demo_dir or default_demo_dir(args.demo), ALS_SPEC if args.demo == "als" else DemoSpec())
        if args.build_only:
            return
    settings = Settings.from_env(workspace=root, host=args.host, port=args.port, device=args.device, database_url=args.database_url)
    workspace = open_workspace(settings.workspace, settings.database_url)
    if args.demo:
        from core.auth.demo_account import ensure_demo_account

        username, password = ensure_demo_account(workspace)
        print(f"Demo sign-in: user {username!r}, password {password!r}", flush=True)
    from core.auth.users import admin_count

    if admin_count(workspace.store) == 0:
        raise PathReviewError("no admin account in this workspace yet; create one with: "
                             f"python run_dashboard.py users add NAME --role admin --workspace {settings.workspace}")

    from waitress import create_server

    from dashboard.app import create_app

    app = create_app(workspace, secure_cookies=args.secure_cookies)
    from core.checks.startup import start_startup_check

    start_startup_check(workspace)  # in the background: problems are logged and shown on the Admin page
    server = create_server(app.server, host=settings.host, port=settings.port, threads=args.threads, **proxy_options(args.trusted_proxy))
    print(f"PathReview: workspace {workspace.name!r} ({workspace.root}), models on {compute_device()}", flush=True)
    print(f"Serving on http://{settings.host}:{settings.port}", flush=True)
    server.run()


def _worker_app(workspace, celery_app) -> None:
    """A worker builds the app against its Celery app: the app's background callbacks become tasks it runs."""
    from dashboard.app import create_app

    create_app(workspace, celery_app=celery_app)


def _workspace(args: argparse.Namespace):
    from core.workspace import open_workspace

    return open_workspace(args.workspace, args.database_url)


def _store(args: argparse.Namespace):
    return _workspace(args).store


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "serve")  # `run_dashboard.py --demo` means `serve --demo`
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        if args.command in (None, "serve"):
            serve(args)
        elif args.command == "users":
            run_users_command(args, _store(args))
        elif args.command == "precompute":
            run_predict(argparse.Namespace(models=None), _workspace(args))  # stored scores first: the cohort page shows them
            return run_precompute(args)
        elif args.command == "worker":
            return run_worker(args, register_app=_worker_app)
        elif args.command == "annotations":
            run_annotations_command(args, _workspace(args))
        elif args.command == "report":
            return run_report(args)
        elif args.command == "import":
            return run_import(args)
        elif args.command == "models":
            return run_models_command(args, _workspace(args))
        elif args.command == "fit":
            return run_fit(args, _workspace(args))
        elif args.command == "predict":
            return run_predict(args, _workspace(args))
        elif args.command == "check":
            return run_check(_workspace(args))
    except PathReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
