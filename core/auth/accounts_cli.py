"""``run_dashboard.py users add|remove|list|passwd``: manage who may sign in to a workspace."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from core.auth.users import ROLES, add_user, list_users, remove_user, set_password
from core.errors import PathReviewError
from core.store.database import CaseStore


def add_users_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="manage accounts: add, remove, list, passwd")
    actions = users.add_subparsers(dest="users_command", required=True)
    for name, helptext in (("add", "create an account"), ("remove", "delete an account"), ("list", "list accounts"),
                           ("passwd", "set an account's password")):
        action = actions.add_parser(name, help=helptext)
        action.add_argument("--workspace", type=Path, required=True, help="the workspace folder")
        action.add_argument("--database-url", default=None, help="override the workspace's database URL")
        if name != "list":
            action.add_argument("username")
        if name == "add":
            action.add_argument("--role", choices=ROLES, default="reviewer")
        if name in ("add", "passwd"):
            action.add_argument("--password-stdin", action="store_true", help="read the password from standard input (scripts)")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"Password for {args.username}: ")
    if getpass.getpass("Again: ") != first:
        raise PathReviewError("the two passwords differ; nothing was changed")
    return first


def run_users_command(args: argparse.Namespace, store: CaseStore) -> None:
    if args.users_command == "list":
        accounts = list_users(store)
        for a in accounts:
            print(f"{a.username}\t{a.role}\t{a.created_at:%Y-%m-%d %H:%M}")
        if not accounts:
            print("no accounts yet; add an admin with: run_dashboard.py users add NAME --role admin --workspace DIR")
    elif args.users_command == "add":
        account = add_user(store, args.username, _password(args), args.role)
        print(f"added {account.username} ({account.role})")
    elif args.users_command == "remove":
        remove_user(store, args.username)
        print(f"removed {args.username}")
    elif args.users_command == "passwd":
        set_password(store, args.username, _password(args))
        print(f"password changed for {args.username}")
