"""A step's command-line options: MLproject's parameter types read as the step expects
them (a whole number from '60.0', a flag from 'true'), a wrong value refused in one
`mlcycle error:` line, and one option per field of the step's parameters dataclass."""

from __future__ import annotations

import sys

import click

from mlcycle.params import fields_of


class WholeNumber(click.ParamType):
    """An integer that also accepts '60.0': MLproject has no int type, only float."""

    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if not number.is_integer():
            self.fail(f"{value!r} is not a whole number", param, ctx)
        return int(number)


class Flag(click.ParamType):
    """true/false, yes/no, 1/0: MLproject parameters are strings."""

    name = "boolean"

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off", ""):
            return False
        self.fail(f"{value!r} is not true or false", param, ctx)


class Number(click.ParamType):
    """A float, refused in the words of the other parameter checks."""

    name = "float"

    def convert(self, value, param, ctx):
        try:
            return float(value)
        except (TypeError, ValueError):
            self.fail(f"must be a number, got {value!r}", param, ctx)


class OneOf(click.Choice):
    """A closed set: listed by --help as click lists choices ([pandas|spark]), a value
    outside it refused as `mlcycle.params.check` words it."""

    def convert(self, value, param, ctx):
        if value in self.choices:
            return value
        self.fail(f"must be one of {', '.join(self.choices)}, got {value!r}", param, ctx)


class StepCommand(click.Command):
    """A step's command: a value of the wrong type is the one-line `mlcycle error:` of
    every other bad parameter (exit 2), not click's usage block."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.BadParameter as exc:
            name = exc.param.name if exc.param is not None else "?"
            sep = " " if exc.message.startswith("must") else ": "
            click.echo(f"mlcycle error: parameter {name}{sep}{exc.message}", err=True)
            sys.exit(2)


INT = WholeNumber()
BOOL = Flag()


_CLICK_TYPES = {int: INT, float: Number(), bool: BOOL, str: click.STRING}


def options_from(params_cls):
    """Decorate a click command with one option per field of a step's parameters
    dataclass: the kebab-case name, the type, the default and the help all come from the
    dataclass, the single source the MLproject agreement test compares with."""

    def decorate(command):
        for field, kind in reversed(fields_of(params_cls)):
            choices = field.metadata.get("choices")
            command = click.option(
                "--" + field.name.replace("_", "-"),
                field.name,
                type=OneOf(choices) if choices and kind is str else _CLICK_TYPES[kind],
                default=field.default,
                show_default=True,
                help=field.metadata.get("help", ""),
            )(command)
        return command

    return decorate
