"""Command line: ``genai-collector serve``, ``genai-collector check-config`` and ``genai-collector demo``.

Option values come from four places, the first that has one winning:
flag, environment variable ``GENAI_COLLECTOR_<NAME>``, the YAML file of ``--config``, default.
This is the only module that reads the environment.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from collector import __version__
from collector.config import ConfigError, Section, Settings, load_settings, parse_duration
from collector.demo import DEFAULT_ENDPOINT

ENV_PREFIX = "GENAI_COLLECTOR_"
NESTED_ENV_SEPARATOR = "__"  # GENAI_COLLECTOR_REDACTION__HASH_KEY sets redaction.hash_key
_LIST_OPTIONS = {name for name, field in Settings.model_fields.items() if field.annotation == tuple[str, ...]}
# Sections (redaction, pricing...) are nested mappings: set in the file, or key by key in the environment.
SECTIONS = {
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}
OPTIONS = [name for name in Settings.model_fields if name not in SECTIONS]


def _is_scalar(annotation: Any) -> bool:
    """Whether one flag value can set the option: not a list, mapping or nested section, nor a secret
    (a flag shows in the process list; secrets come from the environment or the file)."""
    text = str(annotation)
    return not any(marker in text for marker in ("tuple", "dict", "list", "Secret")) and not (
        isinstance(annotation, type) and issubclass(annotation, Section)
    )


# The scalar options of sections also have flags: --retention-max-age sets retention.max_age.
SECTION_OPTIONS = [
    (section, option)
    for section in sorted(SECTIONS)
    for option, field in Settings.model_fields[section].annotation.model_fields.items()  # type: ignore[union-attr]
    if _is_scalar(field.annotation)
]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genai-collector", description="OTLP collector for GenAI telemetry.")
    parser.add_argument("--version", action="version", version=f"genai-collector {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the collector")
    check = commands.add_parser("check-config", help="validate and print the effective configuration")
    vacuum = commands.add_parser(
        "vacuum",
        help="with the collector stopped: rewrite the database so that retention can return freed space "
        "to the file system (databases created before retention existed), and compact it",
    )
    for sub in (serve, check, vacuum):
        sub.add_argument("--config", type=Path, help="YAML config file (env: GENAI_COLLECTOR_CONFIG)")
        for name in OPTIONS:
            field = Settings.model_fields[name]
            default = field.default
            sub.add_argument(
                _flag(name),
                dest=name,
                default=None,
                metavar=name.upper(),
                help=f"{field.description} (env: {ENV_PREFIX}{name.upper()}; default: {_show_default(default)})",
            )
        for section, option in SECTION_OPTIONS:
            field = Settings.model_fields[section].annotation.model_fields[option]  # type: ignore[union-attr]
            env = f"{ENV_PREFIX}{section.upper()}{NESTED_ENV_SEPARATOR}{option.upper()}"
            sub.add_argument(
                _flag(f"{section}_{option}"),
                dest=f"{section}{NESTED_ENV_SEPARATOR}{option}",
                default=None,
                metavar=option.upper(),
                help=f"{field.description} (env: {env}; default: {_show_default(field.default)})",
            )
    _add_demo(commands.add_parser("demo", help="run a simulated agent that sends traces to a collector"))
    return parser


def _add_demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        help=f"the collector's OTLP/HTTP base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT (default: {DEFAULT_ENDPOINT})",
    )
    demo.add_argument("--db", type=Path, help="write this database file in-process instead (no collector needed)")
    demo.add_argument("--config", type=Path, help="with --db: the collector's YAML config file (rules, redaction...)")
    demo.add_argument("--duration", type=_duration, help="how long to run, e.g. 90s or 5m (default: until Ctrl-C)")
    demo.add_argument("--rate", type=_positive, default=1.0, help="agent traces per second, on average (default: 1)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation: same seed, same traces (default: 0)")
    demo.add_argument(
        "--fast",
        action="store_true",
        help="do not wait in real time: send the traces of --duration at once, timestamped over the time just past",
    )


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    return number


def _show_default(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(default) or "none"
    return str(default)


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text: byte {error.start} cannot be decoded") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(error)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must be a mapping of option: value")
    return values


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (with a source excerpt) as one line: what is wrong, and where."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if not problem or mark is None:
        return " ".join(str(error).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


_REFERENCE = re.compile(r"\$(\$?)\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_references(value: Any, environ: Mapping[str, str], path: Path) -> Any:
    """``${NAME}`` (or ``${env:NAME}``) in the file's strings becomes that environment variable, so that a
    secret such as an API key stays out of the file; ``$${NAME}`` is a literal ``${NAME}``."""
    if isinstance(value, dict):
        return {key: expand_references(item, environ, path) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_references(item, environ, path) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name not in environ:
            raise ConfigError(f"config file {path} refers to ${{{name}}}, which is not set in the environment")
        return environ[name]

    return _REFERENCE.sub(substitute, value)


def merge_sources(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Option values by precedence: flag > environment > config file (defaults are the model's)."""
    config_path = args.config or (Path(environ[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in environ else None)
    values: dict[str, Any] = {}
    if config_path:
        values = expand_references(read_config_file(config_path), environ, config_path)
    known = {f"{ENV_PREFIX}CONFIG", *(ENV_PREFIX + name.upper() for name in OPTIONS)}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in known:
            continue
        section, separator, option = key.removeprefix(ENV_PREFIX).lower().partition(NESTED_ENV_SEPARATOR)
        if not separator or section not in SECTIONS:
            raise ConfigError(
                f"unknown environment variable {key}; options are GENAI_COLLECTOR_<OPTION> "
                "or GENAI_COLLECTOR_<SECTION>__<OPTION> (see `genai-collector serve --help`)"
            )
        nested = values.setdefault(section, {})
        if isinstance(nested, dict):
            nested[option] = value
    for name in OPTIONS:
        from_env = environ.get(ENV_PREFIX + name.upper())
        if from_env is not None:
            values[name] = _split_list(from_env) if name in _LIST_OPTIONS else from_env
        from_flag = getattr(args, name, None)
        if from_flag is not None:
            values[name] = _split_list(from_flag) if name in _LIST_OPTIONS else from_flag
    for section, option in SECTION_OPTIONS:
        from_flag = getattr(args, f"{section}{NESTED_ENV_SEPARATOR}{option}", None)
        if from_flag is not None:
            nested = values.setdefault(section, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"{section} must be a mapping of option: value")
            nested[option] = from_flag
    return values


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    return load_settings(merge_sources(args, environ))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.fast and args.duration is None:
            parser.error("demo --fast needs a --duration")
        from collector.demo.runner import main as demo

        return demo(args)
    try:
        settings = settings_from(args, os.environ)
    except ConfigError as error:
        print(f"genai-collector: {error}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    if args.command == "vacuum":
        if not isinstance(settings.db, Path):
            print("genai-collector: vacuum compacts a SQLite file; PostgreSQL has its own VACUUM", file=sys.stderr)
            return 1
        return _vacuum(settings.db)
    from collector.service import run

    return run(settings)


def _vacuum(db: Path) -> int:
    import apsw

    from collector.storage.sqlite.retention import convert_to_incremental

    if not db.exists():
        print(f"genai-collector: no database at {db}", file=sys.stderr)
        return 1
    try:
        before, after = convert_to_incremental(db)
    except apsw.BusyError:
        print(f"genai-collector: {db} is in use; stop the collector first", file=sys.stderr)
        return 1
    except apsw.Error as error:
        print(f"genai-collector: cannot vacuum {db}: {error}", file=sys.stderr)
        return 1
    print(f"{db}: {before:,} bytes before, {after:,} after; freed pages now go back to the file system")
    return 0


if __name__ == "__main__":
    sys.exit(main())
