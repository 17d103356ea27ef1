"""The ``identity`` command line (see INTERFACE.md for the commands users rely on)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from identity.unreadable import clipped

if TYPE_CHECKING:
    # Imported where used: until main() runs, Python turns Ctrl-C into a traceback, so the
    # entry point loads nothing that takes longer than the interpreter's own start.
    from identity.commands import Show
    from identity.settings import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]

# The longest DNS name (RFC 1035): of a longer --host, only this much is echoed.
SHOWN_HOST = 253
# Far more processes than any machine serves with: uvicorn starts every worker before it
# heeds SIGTERM, so a mistyped count would fill the machine with processes.
MAX_WORKERS = 256


class CommandError(Exception):
    """A failure the person at the terminal can act on; printed as one sentence."""


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"identity: {message}", file=sys.stderr)
    raise SystemExit(code)


class UnwrittenOutput(CommandError):
    """Standard output did not take what a command printed (closed, a full disk)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot write to standard output ({reason}).")


def print_json(value: dict[str, Any]) -> None:
    """Printed and flushed, so that an output that refuses it fails here, where the caller
    can still undo what it reports, rather than at exit or not at all."""
    if sys.stdout is None:  # started with standard output closed
        raise UnwrittenOutput("it is closed")
    try:
        print(json.dumps(value, indent=2, default=str), flush=True)
    except OSError as exc:
        raise UnwrittenOutput(exc.strerror or type(exc).__name__) from None


def run_async(work: Awaitable[Any]) -> Any:
    return asyncio.run(work)  # type: ignore[arg-type]


# --- commands ---------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from identity.server import serve

    serve(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from identity.commands import migrate

    migrate(settings)
    print("database is at the latest migration")
    return 0


def _shown(change: Callable[[Show], Awaitable[Any]], undone: str) -> int:
    """Run ``change``, which prints its result with ``print_json`` before it commits: if
    standard output refuses it, the change is rolled back, and the error says ``undone``."""
    try:
        run_async(change(print_json))
    except UnwrittenOutput as exc:
        raise CommandError(f"cannot write to standard output ({exc.reason}); {undone}") from None
    return 0


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from identity.commands import rotate_signing_key

    alg = args.alg or settings.signing_alg
    return _shown(lambda show: rotate_signing_key(settings, alg, show), "no key was added.")


def cmd_keys_retire(args: argparse.Namespace, settings: Settings) -> int:
    from identity.commands import retire_signing_key

    return _shown(lambda show: retire_signing_key(settings, args.kid, show), "no key was retired.")


def _password_from_stdin() -> str:
    """The first line of stdin, as UTF-8 whatever the locale: the browser sends UTF-8, so
    the same password typed there must give the same text here. Typed at a terminal, it is
    asked for twice and not shown."""
    if sys.stdin is None:  # started with file descriptor 0 closed
        raise CommandError(
            "--password-stdin found standard input closed; give the password as a line on stdin."
        )
    if not sys.stdin.isatty():
        return _decoded_password(_line_at_most(sys.stdin.buffer.readline))
    first = _decoded_password(_typed_unseen("Password: "))
    if _decoded_password(_typed_unseen("Repeat the password: ")) != first:
        # Typed unseen, a slip would give the user a password nobody knows.
        raise CommandError("the two passwords typed differ; no user was created.")
    return first


def _line_at_most(readline: Callable[[int], bytes]) -> bytes:
    """A line of at most what any password policy allows (its longest max_length, 4 UTF-8
    bytes a character, a byte order mark and a line break): a file with no line break
    (a binary piped in by mistake) was read whole into memory before the policy refused it."""
    from identity.accounts.password_policy_file import LONGEST_MAX_LENGTH

    most = LONGEST_MAX_LENGTH * 4 + 5
    line = readline(most + 1)
    if len(line) > most:
        raise CommandError(
            f"the password on stdin is longer than any password may be ({LONGEST_MAX_LENGTH} "
            "characters)."
        )
    return line


def _decoded_password(line: bytes) -> str:
    if not line:  # at its end already: nothing was piped in
        raise CommandError("--password-stdin read nothing; give the password as a line on stdin.")
    try:
        # utf-8-sig: a file a Windows editor saved starts with a byte order mark, which no
        # keyboard types; kept, it made a password nobody could sign in with.
        return line.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise CommandError("the password on stdin is not valid UTF-8 text.") from None


def _typed_unseen(prompt: str) -> bytes:
    """A line typed at the terminal on stdin, with its echo off: shown, the password stayed
    on the screen and in the terminal's scrollback. The prompt goes to stderr, since stdout
    carries the JSON for scripts."""
    import termios

    stdin = sys.stdin.fileno()
    echoing = termios.tcgetattr(stdin)
    unseen = list(echoing)
    unseen[3] &= ~termios.ECHO  # the local modes
    termios.tcsetattr(stdin, termios.TCSAFLUSH, unseen)
    try:
        # Asked once the echo is off: what is typed on seeing the prompt stays unseen.
        print(prompt, end="", file=sys.stderr, flush=True)
        return _line_at_most(sys.stdin.buffer.readline)
    finally:  # Ctrl-C too: the terminal is left echoing as it was
        termios.tcsetattr(stdin, termios.TCSAFLUSH, echoing)
        print(file=sys.stderr, flush=True)  # the line break the Enter key did not show


def cmd_users_create(args: argparse.Namespace, settings: Settings) -> int:
    from identity.commands import create_user

    if args.password_stdin:
        password = _password_from_stdin()
    elif args.password is not None:
        password = args.password
    else:
        raise CommandError("give a password with --password or --password-stdin.")
    return _shown(
        lambda show: create_user(
            settings, args.email, password, args.name, is_admin=args.admin, show=show
        ),
        "no user was created.",
    )


def cmd_clients_create(args: argparse.Namespace, settings: Settings) -> int:
    from identity.commands import create_client

    return _shown(lambda show: create_client(settings, args, show), "nothing was registered.")


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="identity",
        description="OAuth 2.0 / OpenID Connect provider and permission service.",
        epilog="Settings come from IDENTITY_* environment variables; see README.md.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API and hosted pages")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--workers", type=int, default=1, help=f"server processes (1; at most {MAX_WORKERS})"
    )
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations up to the latest")
    migrate.set_defaults(handler=cmd_migrate)

    keys = commands.add_parser("keys", help="manage token signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    rotate = key_commands.add_parser(
        "rotate",
        help="add a new signing key, published at once, current IDENTITY_KEYS_REFRESH + 30 s later",
    )
    rotate.add_argument("--alg", choices=("RS256", "ES256"), help="default: IDENTITY_SIGNING_ALG")
    rotate.set_defaults(handler=cmd_keys_rotate)
    retire = key_commands.add_parser("retire", help="remove a signing key from the JWKS")
    retire.add_argument("--kid", required=True, help="the key id, as listed in /jwks.json")
    retire.set_defaults(handler=cmd_keys_retire)

    users = commands.add_parser("users", help="manage users")
    user_commands = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    create_user = user_commands.add_parser("create", help="create a verified user")
    create_user.add_argument("--email", required=True, help="the sign-in address")
    password = create_user.add_mutually_exclusive_group()
    password.add_argument("--password", help="visible in the process list; prefer --password-stdin")
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password's first line from stdin (at a terminal: asked twice, not shown)",
    )
    create_user.add_argument("--name", default="", help="the name shown to people (optional)")
    create_user.add_argument("--admin", action="store_true", help="staff administrator")
    create_user.set_defaults(handler=cmd_users_create)

    clients = commands.add_parser("clients", help="manage OAuth clients")
    client_commands = clients.add_subparsers(
        dest="clients_command", metavar="ACTION", required=True
    )
    create_client = client_commands.add_parser("create", help="register an OAuth client")
    create_client.add_argument("--name", required=True, help="shown on the consent page")
    create_client.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        dest="redirect_uris",
        metavar="URI",
        help="repeatable; matched exactly",
    )
    create_client.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        dest="post_logout_redirect_uris",
        metavar="URI",
        help="repeatable; where logout may send the browser back",
    )
    create_client.add_argument("--public", action="store_true", help="no secret; PKCE always")
    create_client.add_argument("--first-party", action="store_true", help="skip the consent page")
    create_client.add_argument(
        "--grant-type",
        action="append",
        dest="grant_types",
        choices=("authorization_code", "refresh_token", "client_credentials"),
        help="repeatable; default authorization_code and refresh_token",
    )
    create_client.add_argument(
        "--scope", help='allowed scopes, space-separated (default "openid profile email")'
    )
    create_client.add_argument(
        "--resource",
        action="append",
        default=[],
        dest="resources",
        metavar="URI",
        help="repeatable; a resource server the client may ask tokens for (RFC 8707)",
    )
    create_client.add_argument(
        "--no-require-pkce", action="store_true", help="let a confidential client omit PKCE"
    )
    create_client.set_defaults(handler=cmd_clients_create)
    return parser


def _unresolvable(host: str) -> str | None:
    """Why ``--host`` cannot be looked up, if it cannot: uvicorn, failing to, logged the
    resolver's words alone and exited 3, after the migrations. An empty host is every
    address, as to uvicorn."""
    try:
        socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc.strerror or str(exc)
    except UnicodeError:  # a label too long or empty for IDNA
        return "not a valid host name"
    return None


def _unlistenable(host: str, port: int, workers: int) -> str | None:
    """Why ``serve`` could not listen on ``host`` and ``port``, if it could not: uvicorn,
    failing to bind, logged a line of its own and exited 3, after the migrations and the
    first key. Bound as uvicorn binds, then closed at once: with one worker, every address
    the host names, passing over those the machine lacks as asyncio does (IPv6 off); with
    several, the first one, IPv6 for a host with a colon."""
    family = socket.AF_UNSPEC
    if workers > 1:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        addresses = socket.getaddrinfo(
            host or None, port, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:  # a name with no address of the one family uvicorn uses
        return f"cannot listen on {host}:{port} ({exc.strerror}); give --host an IPv4 address."
    unavailable = None
    bound = 0
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and workers == 1:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                shown = f"[{address[0]}]" if family == socket.AF_INET6 else address[0]
                reason = f"cannot listen on {shown}:{port} ({exc.strerror or type(exc).__name__})"
                if exc.errno != errno.EADDRNOTAVAIL:
                    return f"{reason}; choose another --port, or stop the program listening there."
                unavailable = unavailable or f"{reason}; give --host an address of this machine."
            else:
                bound += 1
        if workers > 1:
            break
    return unavailable if bound == 0 else None


def _not_utf8(arguments: Sequence[str]) -> int | None:
    """The position (from 1) of the first argument that is not UTF-8 text, if any.

    Python hands such bytes over as lone surrogates (PEP 383), which no database stores."""
    for position, argument in enumerate(arguments, start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            return position
    return None


def _kid_attached(arguments: Sequence[str]) -> list[str]:
    """``--kid K`` as ``--kid=K``: a kid is a base64url thumbprint, one in 64 starts with "-",
    and argparse takes a separate value starting with "-" for an option."""
    joined: list[str] = []
    rest = iter(arguments)
    for argument in rest:
        value = next(rest, None) if argument == "--kid" else None
        joined.append(argument if value is None else f"--kid={value}")
    return joined


def _errors_nowhere_without_stderr() -> None:
    """Started with file descriptor 2 closed (`2>&-`), Python has no sys.stderr, and
    print(file=None), argparse's usage among them, writes to stdout instead: into the
    secrets and JSON that scripts read from it. Errors then go nowhere; the exit status
    still tells. Opening /dev/null takes descriptor 2 too, so no file opened later (the
    SQLite database) can receive what C code writes to it."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the process's life


def _run(arguments: Sequence[str]) -> int:
    from identity.settings import Settings, SettingsError

    args = build_parser().parse_args(_kid_attached(arguments))
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        fail(f"{exc}.", 2)
    if args.command == "serve" and not 0 < args.port < 65536:
        fail("--port must be between 1 and 65535.", 2)
    if args.command == "serve" and not 0 < args.workers <= MAX_WORKERS:
        fail(f"--workers must be between 1 and {MAX_WORKERS}.", 2)
    if args.command == "serve" and (reason := _unresolvable(args.host)):
        fail(
            f"--host {clipped(args.host, SHOWN_HOST)!r} cannot be listened on ({reason}); "
            "give an address of this machine, such as 127.0.0.1, or 0.0.0.0 for all of them.",
            2,
        )
    if args.command == "serve" and (
        unlistenable := _unlistenable(args.host, args.port, args.workers)
    ):
        fail(unlistenable)
    handler: Handler = args.handler
    from identity.commands import StartupError

    try:
        return handler(args, settings)
    except (CommandError, StartupError) as exc:
        fail(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    _errors_nowhere_without_stderr()
    arguments = sys.argv[1:] if argv is None else argv
    position = _not_utf8(arguments)
    if position is not None:
        fail(f"argument {position} is not valid UTF-8 text.", 2)
    try:
        return _run(arguments)
    except KeyboardInterrupt:
        # Whenever it comes, also while the settings are read and the modules a command
        # needs are imported: what was not committed is rolled back, and a migration stops
        # at the last one completed.
        fail("interrupted.", 130)


if __name__ == "__main__":
    sys.exit(main())
