"""ovapipe's Invoke program: ``./run invoke TASK ...`` (``python -m ovapipe TASK ...``).

Invoke's own program maps its parser errors (unknown flag, missing argument) and a Ctrl-C
outside a task to exit 1, which ovapipe keeps for "a check failed", and reads ``--help``
after a task with required arguments as that argument's value. This subclass keeps Invoke's
behaviour otherwise and makes:

- ``TASK --help`` / ``TASK -h`` anywhere among the task's arguments print the task's help
  (and nothing else runs: no connection, no file read);
- every parser error exit 2 (usage), with a pointer to ``TASK --help``;
- Ctrl-C exit 130.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from invoke import Program
from invoke.exceptions import CollectionNotFound, Exit, ParseError

from ovapipe import __version__
from ovapipe.errors import ConfigError, Interrupted

HELP_FLAGS: Final = ("-h", "--help")


def _usage(action: Callable[[], None], hint: str) -> None:
    try:
        action()
    except ParseError as exc:
        raise Exit(f"error: {exc}{hint}", ConfigError.exit_code) from None
    except CollectionNotFound as exc:
        raise Exit(f"error: {exc}", ConfigError.exit_code) from None


class OvapipeProgram(Program):
    def parse_core(self, argv: Any) -> None:
        _usage(lambda: super(OvapipeProgram, self).parse_core(argv),
               " (see `invoke --help`)")

    def parse_collection(self) -> None:
        _usage(super().parse_collection, "")

    def parse_tasks(self) -> None:
        helped = self._task_asking_for_help(self.core.unparsed)
        if helped is not None:
            self.parser = self._make_parser()
            self.print_task_help(helped)
            raise Exit
        _usage(super().parse_tasks, " (see `invoke TASK --help`)")
        for context in self.tasks:
            for argument in context.positional_args:
                value = argument.value
                if isinstance(value, str) and value.startswith("-"):
                    # Invoke fills a positional argument with whatever comes next.
                    raise Exit(f"error: No idea what {value!r} is! (see `invoke "
                               f"{context.name} --help`)", ConfigError.exit_code)

    def parse_cleanup(self) -> None:
        _usage(super().parse_cleanup, " (see `invoke --list`)")

    def execute(self) -> None:
        try:
            super().execute()
        except KeyboardInterrupt:
            raise Exit(f"error: {Interrupted('interrupted').message}",
                       Interrupted.exit_code) from None

    def _task_asking_for_help(self, argv: list[str]) -> str | None:
        """The task whose arguments hold -h/--help (before a ``--``), if any."""
        # Names from the collection: building a parser here would consume the tasks' help
        # texts (Task.get_arguments pops them), leaving Invoke's own parser without any.
        names = {alias: name for name, aliases in self.collection.task_names.items()
                 for alias in (name, *aliases)}
        current: str | None = None
        for token in argv:
            if token == "--":
                return None
            if token in names:
                current = names[token]
            elif token in HELP_FLAGS and current is not None:
                return current
        return None


program: Final = OvapipeProgram(name="ovapipe", binary="invoke", version=__version__)


def main() -> None:
    program.run()
