"""Typed stage configs: dataclass defaults, overridden by a YAML file, overridden by flags.

Each stage owns one dataclass (defaults live only there, each with a help text).
This module turns such a dataclass into argparse flags and builds an instance from
YAML + flags, rejecting unknown keys by name. Flag names are the field names, so
`--lora_rank 8` and `lora_rank: 8` mean the same thing; fields may carry aliases
for the names used by the Chinese-LLaMA-Alpaca scripts (`--model_name_or_path`).
Allowed values are declared once, on the field (`choices=`, `min=`): `build_config` checks them
and `--help` lists them.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from subjectlm.errors import UserError


class ConfigError(UserError, ValueError):
    """A bad config value or key; the message names the key and where it came from, and `key` is that key
    (so a recipe check can point at its line). Raised as `ConfigError("key: problem")`, as every config's
    `__post_init__` does, the key is the message's first word (`data[1].weight: ...` is about `data`);
    build_config passes it explicitly."""

    def __init__(self, message: str = "", key: str | None = None):
        super().__init__(message)
        if key is None and (named := re.match(r"([A-Za-z_]\w*)(?:[\[.][^:\s]*)?: ", message)):
            key = named.group(1)
        self.key = key


@dataclasses.dataclass(frozen=True)
class PathRole:
    """What a recipe does with a path field, declared on the field (`option(path=...)`): the recipe resolves
    it against the recipe's folder, `--dry-run` checks that it exists, and a stage's freshness key holds its
    fingerprint. A field without a role is not a path.

    writes: the stage writes it (its output folder or file): it need not exist and is not fingerprinted.
    fingerprint: how a read path's content is keyed: `data` (text and records, as the tokenizer cache keys
        them: the data files' names and contents), `content` (every file's name, size and bytes), `manifest`
        (every file's name, size and mtime: cheap for the gigabytes of models and adapters, and changed by
        any re-run of the stage that wrote them).
    model: it may name a model (`default`) instead of a path.
    trains: the stage trains on it (the pipeline's `training_data`)."""

    writes: bool = False
    fingerprint: str = "manifest"
    model: bool = False
    trains: bool = False


TRAINING_DATA = PathRole(fingerprint="data", trains=True)  # pt/sft/dpo data
TEXT_DATA = PathRole(fingerprint="data")        # read, not trained on: validation files, held-out text
DATA_FILES = PathRole(fingerprint="content")    # an exam folder, QA or prompt files
MODEL = PathRole(model=True)                    # a model directory or `default`
ARTIFACT = PathRole()                           # adapters, tokenizers
OUTPUT = PathRole(writes=True)                  # what the stage writes


def option(default: Any = dataclasses.MISSING, help: str = "", aliases: tuple[str, ...] = (),
           choices: Sequence[Any] | None = None, min: float | None = None, path: PathRole | None = None,
           **kw: Any) -> Any:
    """A dataclass field with a help text, optional flag aliases and the values it allows:
    `choices` (for a list field: allowed items) and `min` (smallest number; None stays allowed);
    `path`: its PathRole when it holds a path (what a recipe resolves, checks and fingerprints)."""
    metadata = {"help": help, "aliases": tuple(aliases), "choices": tuple(choices) if choices is not None else None,
                "min": min}
    if path is not None:
        metadata["path"] = path
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def coerce(value: Any, tp: Any, key: str, source: str = "config") -> Any:
    """Convert a YAML or command-line value to the field's declared type."""
    inner, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null"}):
        if optional or inner is Any:
            return None
        raise ConfigError(f"{source}: {key}: must not be empty", key=key)
    origin = typing.get_origin(inner)
    try:
        if inner is Any:
            return value
        if inner is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if inner in (int, float):
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            number = inner(value) if not isinstance(value, str) else inner(float(value) if inner is int and "e" in value.lower() else value)
            return number
        if inner is str:
            if isinstance(value, (dict, list)):
                raise ValueError(f"expected a string, got {type(value).__name__}")
            return str(value)
        if inner is Path:
            return Path(value)
        if origin in (list, tuple):
            (item_type, *_rest) = typing.get_args(inner) or (str,)
            if isinstance(value, str):
                items = [v.strip() for v in value.split(",") if v.strip()]
            elif isinstance(value, (list, tuple)):
                items = list(value)
            else:
                items = [value]
            return [coerce(item, item_type, key, source) for item in items]
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError(f"expected a mapping, got {type(value).__name__}")
            return dict(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {key}: {exc}", key=key) from None
    return value


def check_option(f: dataclasses.Field, value: Any, source: str = "config") -> None:
    """The value against the field's declared `choices` and `min`; a ConfigError naming the key if not allowed."""
    choices, least = f.metadata.get("choices"), f.metadata.get("min")
    if value is None:
        return
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if choices is not None and item not in choices:
            raise ConfigError(f"{source}: {f.name}: must be one of {', '.join(map(str, choices))}, got {item!r}",
                              key=f.name)
        if least is not None and isinstance(item, (int, float)) and item < least:
            raise ConfigError(f"{source}: {f.name}: must be at least {least}, got {item}", key=f.name)


def check_options(config: Any) -> None:
    """Every field of a config instance against its `choices` and `min`: called from `__post_init__`,
    so a config built in Python is checked as one built from YAML or flags is."""
    for f in dataclasses.fields(config):
        check_option(f, getattr(config, f.name), type(config).__name__)


def same_option(cls: type, name: str, default: Any = dataclasses.MISSING, help: str | None = None) -> Any:
    """Field `name` of config class `cls` again (help, aliases, choices, min), with another default or help:
    a recipe stage that takes a command's config declares only what it does differently."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise AttributeError(f"{cls.__name__} has no field {name!r}")
    if default is dataclasses.MISSING:
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    return option(default, help=f.metadata.get("help", "") if help is None else help,
                  aliases=f.metadata.get("aliases", ()), choices=f.metadata.get("choices"), min=f.metadata.get("min"),
                  path=f.metadata.get("path"))


def config_from(cls: type, source: Any, **changes: Any) -> Any:
    """A `cls` config with every field `cls` and the config `source` both declare taken from `source`, then
    `changes`: a recipe stage whose config extends a command's builds that command's config from its own
    (checked by `cls` as any config is)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init} & {f.name for f in dataclasses.fields(source)}
    return cls(**{**{name: getattr(source, name) for name in names}, **changes})


def path_roles(cls: type) -> dict[str, PathRole]:
    """Field name (and each flag alias) -> PathRole, for the fields of a config class that hold paths."""
    roles = {}
    for f in dataclasses.fields(cls):
        if (role := f.metadata.get("path")) is not None:
            roles.update({name: role for name in (f.name, *(a.lstrip("-") for a in f.metadata.get("aliases", ())))})
    return roles


def _alias_keys_to_names(cls: type, values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A YAML key may be a flag alias too (`model_name_or_path: M`, as the old scripts' configs say)."""
    by_alias = {alias.lstrip("-"): f.name for f in dataclasses.fields(cls) for alias in f.metadata.get("aliases", ())}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = by_alias.get(key, key)
        if name in out:
            raise ConfigError(f"{source}: {name}: given twice (as {name!r} and its alias {key!r})"
                              if key != name else f"{source}: {name}: given twice", key=name)
        out[name] = value
    return out


def build_config(cls: type, values: Mapping[str, Any], source: str = "config") -> Any:
    """Instantiate `cls` from a mapping; unknown keys and bad types are errors naming the key."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = _alias_keys_to_names(cls, values, source)
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r} for {cls.__name__}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; known keys: {', '.join(sorted(names))}", key=unknown[0]
        )
    kwargs = {k: coerce(v, hints[k], k, source) for k, v in values.items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in kwargs.items():
        check_option(fields[key], value, source)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = re.search(r"argument: '(\w+)'", str(exc))
        raise ConfigError(f"{source}: {exc}", key=missing.group(1) if missing else None) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys to values")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    """A YAML/JSON-friendly dict of a config (Paths as strings)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, positional_config: bool = True) -> None:
    """One `--field` flag per dataclass field (plus aliases), and `--config FILE`."""
    hints = _field_types(cls)
    if positional_config:
        parser.add_argument("config_file", nargs="?", metavar="CONFIG.yaml", help="YAML file with this stage's keys")
    parser.add_argument("--config", dest="config_flag", metavar="CONFIG.yaml", help="YAML file with this stage's keys (flags override it)")
    for f in dataclasses.fields(cls):
        inner, _ = _unwrap_optional(hints[f.name])
        flags = [f"--{f.name}", *f.metadata.get("aliases", ())]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f.metadata.get("help", "")
        choices, least = f.metadata.get("choices"), f.metadata.get("min")
        if choices is not None:
            help_text += f" (one of: {', '.join(map(str, choices))})"
        if least is not None:
            help_text += f" (at least {least})"
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            help_text += " (required)"
        elif default not in (None, "", []):
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
        if inner is bool:
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        elif typing.get_origin(inner) in (list, tuple):
            kwargs.update(nargs="+", metavar="VALUE")
        elif choices is not None:
            kwargs.update(metavar="{" + ",".join(map(str, choices)) + "}")
        else:
            kwargs.update(metavar=f.name.upper())
        parser.add_argument(*flags, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """YAML file (if any), then the flags that were actually given."""
    values: dict[str, Any] = {}
    source = "command line"
    path = getattr(args, "config_flag", None) or getattr(args, "config_file", None)
    if path:
        values.update(read_yaml(path))
        source = str(path)
    names = {f.name for f in dataclasses.fields(cls)}
    for name in names:
        if name in vars(args):
            value = getattr(args, name)
            # nargs="+" gives a list; allow "a,b" inside it as well.
            if isinstance(value, list):
                value = [part for item in value for part in str(item).split(",") if part]
            values[name] = value
    return build_config(cls, values, source)
