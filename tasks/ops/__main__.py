"""`python -m tasks.ops hash`: print the hash of an operator's password, for OPS_PASSWORD_HASH.

The password is read without echo from the terminal (asked twice), or as the first line of standard
input when that is not a terminal (`printf '%s\\n' "$PASSWORD" | python -m tasks.ops hash`). It is
never printed; a password that is empty or too short is refused (exit 2).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from tasks.ops.passwords import PasswordHashError, check_password_rules, hash_password


def read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Operator's password: ")
    check_password_rules(password)
    if getpass.getpass("Again: ") != password:
        raise PasswordHashError("the two passwords differ")
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.ops", description="The operator's console.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("hash", help="print the hash of a password (read from the terminal or stdin)")
    parser.parse_args(argv)
    try:
        hashed = hash_password(read_password())
    except PasswordHashError as exc:
        print(f"ops: {exc}; nothing printed", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("ops: no password given", file=sys.stderr)
        return 2
    print(hashed)
    # Said on stderr, so that `$(python -m tasks.ops hash)` takes the hash alone.
    print("Set OPS_PASSWORD_HASH to it (in a compose file, write each $ as $$).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
