"""Settings: every option is a flag, an environment variable RMM_STREAM_<OPTION> and a key of the
YAML config file. Precedence: flag, then environment, then config file, then default."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stream.errors import ConfigurationError

ENV_PREFIX = "RMM_STREAM_"


class ConfigError(ConfigurationError):
    """Bad configuration: exit 2 with this one-line message."""


@dataclass(frozen=True)
class Option:
    name: str  # snake case: config key; flag is --name-with-dashes; env RMM_STREAM_NAME
    kind: str  # str | int | float | bool | list
    default: Any
    help: str
    commands: tuple[str, ...]
    secret: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


R, T, RUN = "replay", "table", "run"
OPTIONS: list[Option] = [
    Option(
        "rules", "list", None, "rule file or folder (repeatable); default config/rules", (R, T, RUN)
    ),
    Option(
        "store",
        "str",
        "memory",
        "memory, redis://HOST:PORT/DB, rediss://... (password in the URL or "
        "RMM_STREAM_REDIS_PASSWORD)",
        (R, T, RUN),
    ),
    Option("redis_prefix", "str", "rmm:", "prefix of every Redis key", (R, T, RUN)),
    Option(
        "redis_buckets",
        "int",
        256,
        "hash buckets of the group key (at most this many script calls per batch)",
        (R, T, RUN),
    ),
    Option(
        "as_of", "str", None, "the query's now(), ISO 8601; default the wall clock", (R, T, RUN)
    ),
    Option("exclusions", "str", None, "exclusions file (YAML)", (R, RUN)),
    Option("excluded", "str", None, "write excluded events here (JSON lines)", (R, RUN)),
    Option("alerts", "str", "-", "alerts as JSON lines to PATH or - (stdout)", (R, RUN)),
    Option(
        "summary", "str", None, "at end of input, the whole table as JSON lines (PATH or -)", (R,)
    ),
    Option("dead_letter", "str", None, "bad records as JSON lines to PATH", (R, RUN)),
    Option("metrics_port", "int", None, "serve /metrics on this port while replaying", (R,)),
    Option(
        "validate_all",
        "bool",
        False,
        "decode and validate every message (no prefilter; slower, for audits)",
        (R, RUN),
    ),
    Option("batch_size", "int", 1000, "messages per batch", (R, RUN)),
    Option(
        "workers",
        "int",
        0,
        "processes that prefilter a large input file in parallel (0: one per core, "
        "1: none); results keep file order",
        (R,),
    ),
    # -- the live service (`rmm-stream run`, docs/operations.md) ----------------------------
    Option(
        "source",
        "str",
        "kafka",
        "kafka (any Kafka, and the Event Hubs Kafka endpoint with --profile eventhubs)",
        (RUN,),
        choices=("kafka", "eventhub"),
    ),
    Option(
        "runner",
        "str",
        "faust",
        "Kafka consumer-group implementation: faust (faust-streaming App and agent) or aiokafka "
        "(a plain aiokafka group consumer); both commit only durable batches",
        (RUN,),
        choices=("faust", "aiokafka"),
    ),
    Option(
        "bootstrap_servers",
        "str",
        None,
        "Kafka bootstrap servers HOST:PORT[,HOST:PORT] (Event Hubs: NAMESPACE.servicebus."
        "windows.net:9093)",
        (RUN,),
    ),
    Option("topic", "list", None, "input topic (repeatable, or comma separated)", (RUN,)),
    Option("group", "str", "rmm-stream", "consumer group", (RUN,)),
    Option(
        "starting_position",
        "str",
        "latest",
        "where a group with no committed offset starts",
        (RUN,),
        choices=("earliest", "latest"),
    ),
    Option(
        "profile",
        "str",
        "",
        "client defaults: eventhubs (SASL_SSL/PLAIN, $ConnectionString, Microsoft's timeouts)",
        (RUN,),
    ),
    Option(
        "security_protocol",
        "str",
        None,
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default PLAINTEXT; eventhubs: SASL_SSL)",
        (RUN,),
    ),
    Option(
        "sasl_mechanism",
        "str",
        None,
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default PLAIN)",
        (RUN,),
    ),
    Option("sasl_username", "str", None, "SASL user (eventhubs: $ConnectionString)", (RUN,)),
    Option(
        "sasl_password",
        "str",
        None,
        "SASL password (Event Hubs: the connection string); prefer the env var or a file",
        (RUN,),
        secret=True,
    ),
    Option("sasl_password_file", "str", None, "read the SASL password from this file", (RUN,)),
    Option("ssl_cafile", "str", None, "CA bundle for TLS (default: the system's)", (RUN,)),
    Option("alerts_topic", "str", None, "also send alerts to this Kafka topic", (RUN,)),
    Option(
        "dead_letter_topic",
        "str",
        None,
        "send bad records to this Kafka topic (reason in headers)",
        (RUN,),
    ),
    Option("http_port", "int", 8080, "serve /metrics, /healthz and /readyz (0: off)", (RUN,)),
    Option(
        "stop_after_idle",
        "float",
        None,
        "exit 0 once every input partition is committed to its end and nothing arrived for "
        "this many seconds (tests, catch-up jobs)",
        (RUN,),
    ),
    Option(
        "unhealthy_after",
        "float",
        300.0,
        "/healthz fails when this worker holds partitions with lag and committed nothing for "
        "this many seconds",
        (RUN,),
    ),
    Option(
        "batch_within",
        "float",
        0.5,
        "seconds to wait for a batch to fill before processing what has arrived",
        (RUN,),
    ),
    Option("log_level", "str", "INFO", "DEBUG, INFO, WARNING or ERROR", (R, T, RUN)),
    Option("log_format", "str", "text", "text or json", (R, T, RUN), choices=("text", "json")),
]
BY_NAME = {o.name: o for o in OPTIONS}


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--config", default=None, help="YAML config file (env RMM_STREAM_CONFIG)")
    for o in OPTIONS:
        if command not in o.commands:
            continue
        help_text = f"{o.help} [env {o.env}]"
        if o.kind == "bool":
            parser.add_argument(
                o.flag, action="store_const", const=True, default=None, help=help_text
            )
        elif o.kind == "list":
            parser.add_argument(o.flag, action="append", default=None, help=help_text)
        else:
            parser.add_argument(o.flag, default=None, help=help_text, choices=o.choices)


def _convert(o: Option, value: Any, where: str) -> Any:
    try:
        if o.kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if o.kind == "int":
            if isinstance(value, bool):
                raise ValueError(f"not an integer: {value!r}")
            return int(value)
        if o.kind == "float":
            return float(value)
        if o.kind == "list":
            if isinstance(value, list):
                return [str(v) for v in value]
            return [v.strip() for v in str(value).split(",") if v.strip()]
        if o.choices and str(value) not in o.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(o.choices)}")
        return None if value is None else str(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {o.name}: {exc}") from None


def load_config_file(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"config file {path}: invalid YAML: {one_line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must be a mapping of option names to values")
    unknown = [k for k in data if k not in BY_NAME]
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key {unknown[0]!r} (keys are option names in "
            "snake case, e.g. redis_prefix)"
        )
    return data


def resolve(
    command: str, ns: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    config_path = getattr(ns, "config", None) or env.get(ENV_PREFIX + "CONFIG")
    file_values = load_config_file(config_path) if config_path else {}
    out: dict[str, Any] = {"config": config_path}
    for o in OPTIONS:
        if command not in o.commands and o.name not in file_values:
            continue
        flag_value = getattr(ns, o.name, None)
        if flag_value is not None:
            out[o.name] = _convert(o, flag_value, o.flag)
        elif o.env in env:
            out[o.name] = _convert(o, env[o.env], o.env)
        elif file_values.get(o.name) is not None:  # `key:` with no value means unset
            out[o.name] = _convert(o, file_values[o.name], str(config_path))
        else:
            out[o.name] = o.default
    return out


# Read by the code directly rather than through OPTIONS.
_OTHER_ENV = {
    "CONFIG",
    "REDIS_PASSWORD",
    "SASL_PASSWORD",
    "EVENTHUB_CONNECTION_STRING",
    "CACHE",
    "RUN_DIR",
}


def unknown_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """RMM_STREAM_* variables that no option reads: likely typos, worth a warning."""
    import difflib

    env = os.environ if environ is None else environ
    names = [o.env for o in OPTIONS] + [ENV_PREFIX + n for n in _OTHER_ENV]
    out = []
    for k in sorted(env):
        if k.startswith(ENV_PREFIX) and k not in names:
            close = difflib.get_close_matches(k, names, n=1, cutoff=0.8)
            out.append(k + (f" (did you mean {close[0]}?)" if close else ""))
    return out


def default_rules_paths() -> list[Path]:
    for cand in (Path("config/rules"), Path(__file__).resolve().parent.parent / "config/rules"):
        if cand.is_dir():
            return [cand]
    raise ConfigError("no rules given and no config/rules folder found: pass --rules PATH")
