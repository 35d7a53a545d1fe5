"""The README is part of the feature: every option and every refusal reason is documented."""

from __future__ import annotations

from collector.config import Settings
from tests.helpers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_option_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        assert f"| `{name}` |" in README, f"README's configuration table does not document {name}"


def test_quickstart_has_exactly_two_commands() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in quickstart.splitlines() if line.strip() and not line.startswith("#")]
    assert [command.split("#")[0].strip() for command in commands] == ["make serve", "make test"]


def test_every_config_example_in_the_readme_is_valid() -> None:
    import yaml

    from collector.config import load_settings

    blocks = [block.split("```", 1)[0] for block in README.split("```yaml")[1:]]
    checked = 0
    for block in blocks:
        values = yaml.safe_load(block)
        if not set(values) <= set(Settings.model_fields):
            continue  # a Prometheus scrape config, say
        redaction = values.get("redaction")
        if isinstance(redaction, dict):  # the README tells users to set the key from a secret
            redaction.setdefault("hash_key", "from-a-secret-0123456789")
        load_settings(values)
        checked += 1
    assert checked >= 3
