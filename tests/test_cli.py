"""The command line as a user meets it: ``genai-collector check-config`` and ``serve`` start-up, run as subprocesses."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import Settings
from tests import helpers
from tests.helpers import PORT_0, Daemon, collector_command, collector_environment


def run_cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        collector_command(*arguments),
        capture_output=True,
        text=True,
        env=collector_environment(**(env or {})),
        timeout=30,
    )


def effective_config(*arguments: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run_cli("check-config", *arguments, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return yaml.safe_load(result.stdout)


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused configuration or a failed start-up leaves on stderr."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("genai-collector: ")]
    assert len(ours) == 1, result.stderr
    assert result.stderr.rstrip("\n").endswith(ours[0]), "the reason must be the last thing printed"
    return ours[0]


def config_error(*arguments: str, env: dict[str, str] | None = None) -> str:
    result = run_cli("check-config", *arguments, env=env)
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return refusal(result)


def write_config(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


# --- check-config: the effective configuration ------------------------------------------------


def test_check_config_prints_the_defaults_as_yaml() -> None:
    config = effective_config()
    assert list(config) == list(Settings.model_fields)
    assert config["db"] == "data/genai-collector.db"
    assert config["grpc_endpoint"] == "127.0.0.1:4317"
    assert config["http_endpoint"] == "127.0.0.1:4318"
    assert config["admin_endpoint"] == "127.0.0.1:8888"
    assert config["queue_capacity"] == 20_000
    assert config["batch_max_age"] == 0.01
    assert config["max_request_size"] == 20 * 1024 * 1024
    assert config["sqlite_synchronous"] == "full"
    assert config["cors_origins"] == []


def test_check_config_output_is_a_config_file_that_reproduces_itself(tmp_path: Path) -> None:
    printed = run_cli(
        "check-config", "--queue-capacity", "500", "--batch-size", "50", "--cors-origins", "https://a.example"
    )
    assert printed.returncode == 0, printed.stderr
    saved = tmp_path / "effective.yaml"
    saved.write_text(printed.stdout, encoding="utf-8")
    assert run_cli("check-config", "--config", str(saved)).stdout == printed.stdout


PRECEDENCE = {
    # option: (value in the file, in the environment, as a flag), then what check-config shows for
    # the default, the file, the environment and the flag.
    "queue_capacity": ((30_000, "40000", "50000"), (20_000, 30_000, 40_000, 50_000)),
    "shutdown_timeout": (("3s", "500ms", "1m"), (10.0, 3.0, 0.5, 60.0)),
    "http_endpoint": (
        ("0.0.0.0:5318", "127.0.0.1:6318", "[::1]:7318"),
        ("127.0.0.1:4318", "0.0.0.0:5318", "127.0.0.1:6318", "[::1]:7318"),
    ),
    "cors_origins": (
        (["https://file.example"], "https://a.example, https://b.example", "https://flag.example"),
        ([], ["https://file.example"], ["https://a.example", "https://b.example"], ["https://flag.example"]),
    ),
}


@pytest.mark.parametrize("option", list(PRECEDENCE))
def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path, option: str) -> None:
    (in_file, in_env, as_flag), (default, from_file, from_env, from_flag) = PRECEDENCE[option]
    config_file = write_config(tmp_path / "collector.yaml", {option: in_file})
    with_file = ("--config", str(config_file))
    env = {f"GENAI_COLLECTOR_{option.upper()}": in_env}
    flag = ("--" + option.replace("_", "-"), as_flag)

    assert effective_config()[option] == default
    assert effective_config(*with_file)[option] == from_file
    assert effective_config(*with_file, env=env)[option] == from_env
    assert effective_config(*with_file, *flag, env=env)[option] == from_flag


def test_config_file_can_be_named_by_the_environment(tmp_path: Path) -> None:
    from_env = write_config(tmp_path / "env.yaml", {"queue_capacity": 30_000})
    from_flag = write_config(tmp_path / "flag.yaml", {"queue_capacity": 40_000})
    env = {"GENAI_COLLECTOR_CONFIG": str(from_env)}
    assert effective_config(env=env)["queue_capacity"] == 30_000
    assert effective_config("--config", str(from_flag), env=env)["queue_capacity"] == 40_000


def test_empty_list_option_turns_the_file_value_off(tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "collector.yaml", {"cors_origins": ["https://file.example"]})
    assert effective_config("--config", str(config_file), "--cors-origins", "")["cors_origins"] == []
    env = {"GENAI_COLLECTOR_CORS_ORIGINS": " , "}
    assert effective_config("--config", str(config_file), env=env)["cors_origins"] == []


def test_empty_config_file_means_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set yet\n", encoding="utf-8")
    assert effective_config("--config", str(empty)) == effective_config()


# --- check-config: refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("--http-endpoint", "nonsense"), "http_endpoint: 'nonsense' is not HOST:PORT"),
        (("--grpc-endpoint", "localhost"), "grpc_endpoint: 'localhost' is not HOST:PORT"),
        (("--admin-endpoint", ":8888"), "admin_endpoint: ':8888' has no host"),
        (("--http-endpoint", "127.0.0.1:70000"), "http_endpoint.port: Input should be less than or equal to 65535"),
        (("--queue-capacity", "-5"), "queue_capacity: Input should be greater than or equal to 1"),
        (("--queue-capacity", "0"), "queue_capacity: Input should be greater than or equal to 1"),
        (("--queue-capacity", "lots"), "queue_capacity: Input should be a valid integer"),
        (("--batch-size", "0"), "batch_size: Input should be greater than or equal to 1"),
        (("--queue-capacity", "100", "--batch-size", "500"), "batch_size (500) cannot exceed queue_capacity (100)"),
        (("--shutdown-timeout", "10 parsecs"), "shutdown_timeout: '10 parsecs' is not a duration"),
        (("--batch-max-age=-5ms",), "batch_max_age: '-5ms' is not a duration"),
        (("--max-request-size", "huge"), "max_request_size: could not parse value and unit"),
        (("--max-request-size", "12 parsecs"), "max_request_size: could not interpret byte unit"),
        (("--grpc-max-receive-size", "100B"), "grpc_max_receive_size must be at least 1KiB"),
        (("--sqlite-synchronous", "off"), "sqlite_synchronous: Input should be 'normal' or 'full'"),
        (
            ("--grpc-endpoint", "127.0.0.1:4318"),
            "grpc_endpoint, http_endpoint and admin_endpoint must use different ports",
        ),
    ],
)
def test_bad_flag_value_is_refused_naming_the_option(arguments: tuple[str, ...], expected: str) -> None:
    line = config_error(*arguments)
    assert line.startswith("genai-collector: invalid configuration: ")
    assert expected in line


def test_bad_environment_value_is_refused_naming_the_option() -> None:
    line = config_error(env={"GENAI_COLLECTOR_RETRY_AFTER": "soon"})
    assert "retry_after: 'soon' is not a duration" in line


def test_unknown_key_in_the_file_is_refused(tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "collector.yaml", {"queue_capacity": 10, "batch_size": 5, "queue_capacty": 1})
    line = config_error("--config", str(config_file))
    assert "queue_capacty:" in line
    assert "queue_capacity:" not in line


def test_bad_value_in_the_file_is_refused(tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "collector.yaml", {"retry_after": "10 parsecs"})
    assert "retry_after: '10 parsecs' is not a duration" in config_error("--config", str(config_file))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db: [unclosed\n", "expected ',' or ']'"),
        ("queue_capacity: 10\n\tbatch_size: 5\n", "found character '\\t' that cannot start any token"),
        ("queue_capacity: 1\n  batch_size: 2\n", "mapping values are not allowed here"),
    ],
)
def test_invalid_yaml_is_refused_in_one_line_with_its_position(tmp_path: Path, text: str, expected: str) -> None:
    config_file = tmp_path / "collector.yaml"
    config_file.write_text(text, encoding="utf-8")
    line = config_error("--config", str(config_file))
    assert f"config file {config_file} is not valid YAML: " in line
    assert expected in line
    assert "line 2" in line


def test_config_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "collector.yaml"
    config_file.write_bytes(b"queue_capacity: \xff\xfe\n")
    line = config_error("--config", str(config_file))
    assert line == f"genai-collector: config file {config_file} is not UTF-8 text: byte 16 cannot be decoded"


def test_config_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "collector.yaml"
    config_file.write_text("- queue_capacity\n- 10\n", encoding="utf-8")
    assert f"config file {config_file} must be a mapping of option: value" in config_error("--config", str(config_file))


@pytest.mark.parametrize(("name", "reason"), [("missing.yaml", "No such file or directory"), (".", "Is a directory")])
def test_unreadable_config_file_is_refused(tmp_path: Path, name: str, reason: str) -> None:
    path = tmp_path / name
    assert config_error("--config", str(path)) == f"genai-collector: cannot read config file {path}: {reason}"


# --- serve: start-up ----------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def serve(tmp_path: Path, *arguments: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    pinned = ("--ingest-workers", str(helpers.INGEST_WORKERS))  # as every collector of the suite (tests/helpers.py)
    result = run_cli("serve", "--db", str(tmp_path / "collector.db"), *PORT_0, *pinned, *arguments)
    return result, time.monotonic() - started


def test_serve_refuses_a_bad_configuration_before_starting(tmp_path: Path) -> None:
    result, _ = serve(tmp_path, "--batch-size", "0")
    assert "batch_size: Input should be greater than or equal to 1" in refusal(result)
    assert not (tmp_path / "collector.db").exists()


@pytest.mark.parametrize("endpoint", ["http_endpoint", "grpc_endpoint", "admin_endpoint"])
def test_serve_fails_fast_when_a_port_is_in_use(tmp_path: Path, busy_port: int, endpoint: str) -> None:
    result, elapsed = serve(tmp_path, "--" + endpoint.replace("_", "-"), f"127.0.0.1:{busy_port}")
    line = refusal(result)
    assert line.startswith(f"genai-collector: cannot listen on {endpoint} 127.0.0.1:{busy_port}: ")
    assert "in use" in line.lower()
    assert elapsed < 15


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("parent-is-a-file", "cannot create the database directory {parent}"),
        ("grandparent-is-a-file", "cannot create the database directory {parent}: Not a directory"),
        ("db-is-a-directory", "cannot open the database {db} for writing"),
        ("db-is-not-sqlite", "cannot open the database {db} for writing: file is not a database"),
    ],
)
def test_serve_fails_fast_when_the_database_cannot_be_written(tmp_path: Path, layout: str, expected: str) -> None:
    regular_file = tmp_path / "regular-file"
    regular_file.write_text("not a directory\n", encoding="utf-8")
    db = {
        "parent-is-a-file": regular_file / "collector.db",
        "grandparent-is-a-file": regular_file / "data" / "collector.db",
        "db-is-a-directory": tmp_path,
        "db-is-not-sqlite": regular_file,
    }[layout]
    started = time.monotonic()
    result = run_cli("serve", "--db", str(db), *PORT_0, "--ingest-workers", str(helpers.INGEST_WORKERS))
    line = refusal(result)
    assert expected.format(parent=db.parent, db=db) in line
    assert time.monotonic() - started < 15
    assert regular_file.read_text(encoding="utf-8") == "not a directory\n"


def test_serve_on_port_0_logs_the_ports_it_chose(tmp_path: Path) -> None:
    with Daemon(tmp_path / "collector.db") as daemon:
        daemon.wait_listening()
        assert all(port > 0 for port in daemon.ports.values())
        assert len(set(daemon.ports.values())) == 3
        for port in daemon.ports.values():
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert f"database {tmp_path / 'collector.db'}" in daemon.stderr
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=15) == 0


def test_redaction_scope_and_allow_list_from_the_environment_and_the_file(tmp_path: Path) -> None:
    config = effective_config(
        env={
            "GENAI_COLLECTOR_REDACTION__SCOPE": "content",
            "GENAI_COLLECTOR_REDACTION__ALLOW_KEYS": "tenant.id, myapp.*",
        }
    )
    assert config["redaction"]["scope"] == "content"
    assert config["redaction"]["allow_keys"] == ["tenant.id", "myapp.*"]
    path = write_config(tmp_path / "c.yaml", {"redaction": {"allow_keys": ["tenant.id"], "detectors": {"ipv6": "off"}}})
    from_file = effective_config("--config", str(path))["redaction"]
    assert from_file["allow_keys"] == ["tenant.id"] and from_file["scope"] == "all"
    assert from_file["detectors"] == {"ipv6": "off"}
    assert "scope" in config_error(env={"GENAI_COLLECTOR_REDACTION__SCOPE": "everything"})


# --- retention: its section's flags and environment, and the vacuum command ----------------------


def test_retention_options_come_from_flags_environment_and_file(tmp_path: Path) -> None:
    assert effective_config()["retention"] == {
        "max_age": 7 * 86400.0,
        "max_size": None,
        "low_water_mark": 0.9,
        "snapshots_max_age": 30 * 86400.0,
        "interval": 1.0,
    }
    config_file = write_config(tmp_path / "collector.yaml", {"retention": {"max_age": "2d", "max_size": "1GiB"}})
    env = {"GENAI_COLLECTOR_RETENTION__MAX_SIZE": "10GiB", "GENAI_COLLECTOR_RETENTION__LOW_WATER_MARK": "0.8"}
    retention = effective_config("--config", str(config_file), "--retention-max-age", "0", env=env)["retention"]
    assert retention["max_age"] == 0  # the flag, over the file
    assert retention["max_size"] == 10 * 2**30  # the environment, over the file
    assert retention["low_water_mark"] == 0.8
    assert effective_config(env={"GENAI_COLLECTOR_RETENTION__MAX_SIZE": ""})["retention"]["max_size"] is None
    assert "retention.max_size: max_size must be at least 1MiB" in config_error("--retention-max-size", "1000")
    assert "retention.max_age" in config_error("--retention-max-age", "a week")
    assert "--redaction-hash-key" not in run_cli("serve", "--help").stdout  # secrets never on a command line


def test_vacuum_converts_an_old_database_so_that_freed_pages_go_back(tmp_path: Path) -> None:
    import apsw

    db = tmp_path / "old.db"
    old = apsw.Connection(str(db))  # as made before auto_vacuum=INCREMENTAL
    old.pragma("journal_mode", "wal")
    old.execute("CREATE TABLE filler (x); INSERT INTO filler VALUES (1)")
    old.close()
    result = run_cli("vacuum", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "bytes before" in result.stdout
    converted = apsw.Connection(str(db))
    assert converted.pragma("auto_vacuum") == 2
    assert converted.execute("SELECT x FROM filler").fetchall() == [(1,)]
    assert refusal(run_cli("vacuum", "--db", str(tmp_path / "missing.db"))).startswith("genai-collector: no database")


# --- the query API's endpoint ------------------------------------------------------------------


def test_query_endpoint_from_its_flag_and_the_environment() -> None:
    assert effective_config()["query"]["endpoint"] == "127.0.0.1:16686"
    from_env = {"GENAI_COLLECTOR_QUERY__ENDPOINT": "127.0.0.1:9001"}
    assert effective_config(env=from_env)["query"]["endpoint"] == "127.0.0.1:9001"
    assert effective_config("--query-endpoint", "0.0.0.0:9000", env=from_env)["query"]["endpoint"] == "0.0.0.0:9000"
    result = run_cli("check-config", "--query-endpoint", "127.0.0.1:4318", "--http-endpoint", "127.0.0.1:4318")
    assert "query.endpoint must use a port of its own" in refusal(result)


def test_serve_fails_fast_when_the_query_port_is_in_use(tmp_path: Path, busy_port: int) -> None:
    result, elapsed = serve(tmp_path, "--query-endpoint", f"127.0.0.1:{busy_port}")
    line = refusal(result)
    assert line.startswith(f"genai-collector: cannot listen on query.endpoint 127.0.0.1:{busy_port}: ")
    assert elapsed < 15


# --- ingest workers ------------------------------------------------------------------------------


def test_ingest_workers_from_flag_environment_and_auto() -> None:
    """check-config prints ``auto`` as given, not this machine's count: a saved file stays right on another."""
    assert effective_config()["ingest"]["workers"] == "auto"
    assert effective_config(env={"GENAI_COLLECTOR_INGEST__WORKERS": "3"})["ingest"]["workers"] == 3
    assert effective_config("--ingest-workers", "1")["ingest"]["workers"] == 1
    assert effective_config("--ingest-workers", "Auto")["ingest"]["workers"] == "auto"
    result = run_cli("check-config", "--ingest-workers", "-1")
    assert "ingest.workers: -1 is neither auto nor a number of processes (0 or more)" in refusal(result)


@pytest.mark.parametrize("endpoint", ["http_endpoint", "grpc_endpoint"])
def test_serve_with_ingest_workers_fails_fast_when_a_port_is_in_use(
    tmp_path: Path, busy_port: int, endpoint: str
) -> None:
    flag = "--" + endpoint.replace("_", "-")
    result, elapsed = serve(tmp_path, "--ingest-workers", "2", flag, f"127.0.0.1:{busy_port}")
    line = refusal(result)
    assert line.startswith(f"genai-collector: cannot listen on {endpoint} 127.0.0.1:{busy_port}: ")
    assert "in use" in line.lower()
    assert elapsed < 15
