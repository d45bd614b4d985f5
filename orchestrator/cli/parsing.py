"""argparse, made to name the argument the operator got wrong.

Two of argparse's defaults misreport a mistyped flag:

- prefix matching: ``--out`` is taken as ``--output-tokens`` (``allow_abbrev``), so
  ``bench --out 64`` set the output length instead of failing;
- a nested subcommand (``bench compare``) takes the first stray value as its name: ``bench --out
  x.json`` said "argument compare: invalid choice: 'x.json'", because argparse reports ``--out``
  as unrecognised only after every positional has been consumed.

``Commands`` (the top level's ``add_subparsers(action=...)``) makes parsers that take flags only
as spelt in full; ``NestedCommands`` leaves a value that names no subcommand to argparse's
"unrecognized arguments" error, which then names the flag and its value together.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    _SubParsers = argparse._SubParsersAction


class Commands(_SubParsers):
    """Subcommands whose parsers do not expand abbreviated flags."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("allow_abbrev", False)
        return super().add_parser(name, **kwargs)


class NestedCommands(Commands):
    """Optional subcommands under a command that also runs on its own (``bench`` and ``bench
    compare``). A first value that is no subcommand is an unrecognised argument, not a bad
    choice; the rest of the line is still parsed by the parent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: argparse's own name -> parser map, filled by add_parser and read by super().__call__
        self.names = self.choices
        # With choices, argparse rejects an unknown name before __call__ can judge it (typeshed
        # types choices as that map; argparse itself reads None as "no check").
        self.choices = None  # type: ignore[assignment]

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        args = [values] if isinstance(values, str) else list(values or [])
        if args and args[0] not in self.names:
            _, rest = parser.parse_known_args(args[1:], namespace)
            # the attribute argparse itself uses to hand a subparser's leftovers to the parent
            extras = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, [])
            setattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, [*extras, args[0], *rest])
            return
        super().__call__(parser, namespace, values, option_string)
