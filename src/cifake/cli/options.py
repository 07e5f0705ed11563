"""Command options generated from a dataclass of settings (cifake.settings): each field's help, allowed values,
flag and unit declared once, so a command's options and its library's defaults cannot drift apart."""

from __future__ import annotations

import functools
import inspect
from dataclasses import fields
from typing import Annotated

import typer

from cifake.cli.common import choice, value

_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _option(setting, panel: str | None, show_default: bool = True) -> inspect.Parameter:
    """A typer option declared by a settings field: its help, its values (an Enum for a choice), its flag, and a
    default in the option's unit."""
    meta, name = setting.metadata, setting.name.replace("_", "-")
    allowed = meta["allowed"]
    kind = choice(setting.name.title().replace("_", ""), allowed.choices) if allowed and allowed.choices \
        else _TYPES[setting.type]
    flag = meta["flag"] or (f"--{name}/--no-{name}" if kind is bool else f"--{name}")
    default = setting.default
    if meta["unit"] != 1:  # in the option's unit, where fractions make sense (0.5 MB); shown as 20, not 20.0
        kind, default = float, setting.default / meta["unit"]
        default = int(default) if default.is_integer() else default
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, typer.Option(flag, help=meta["help"], rich_help_panel=panel,
                                                                     show_default=show_default)])


def _in_field_unit(setting, given):
    """An option's value in its field's unit and type (e.g. 20 MB -> 20,971,520 bytes)."""
    unit = setting.metadata["unit"]
    given = value(given)
    return type(setting.default)(given * unit) if unit != 1 else given


def settings_options(settings_class, name: str, panel: str | None = None, *, only_given: bool = False,
                     build: bool = True, skip: tuple[str, ...] = (), show_defaults: bool = True):
    """Give a command one option per field of `settings_class` declared with cifake.settings.setting; it receives
    `name`: the settings built from them. With build=False it receives the dict of every option's value instead
    (for settings that need fields the command parses itself), with only_given the dict of the options given on
    the command line or by environment (for it to merge over other settings, a recipe file, first). `skip` names
    fields the command sets otherwise; show_defaults=False hides defaults the command does not use as they are."""

    def decorate(command):
        declared = [f for f in fields(settings_class) if "help" in f.metadata and f.name not in skip]

        @functools.wraps(command)
        def with_settings(ctx: typer.Context, **options):
            source = ctx.get_parameter_source  # typer carries its own click: its ParameterSource compares by name
            chosen = {s.name: _in_field_unit(s, options.pop(s.name)) for s in declared}
            if only_given:
                chosen = {key: v for key, v in chosen.items() if source(key).name in ("COMMANDLINE", "ENVIRONMENT")}
            if wants_context:
                options["ctx"] = ctx
            return command(**options, **{name: settings_class(**chosen) if build and not only_given else chosen})

        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != name]
        wants_context = any(p.name == "ctx" for p in own)
        own = [p for p in own if p.name != "ctx"]
        context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        generated = [_option(s, panel, show_defaults) for s in declared]
        with_settings.__signature__ = inspect.Signature(own + [context] + generated)
        return with_settings

    return decorate
