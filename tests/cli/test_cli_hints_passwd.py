"""``edgefleet hints passwd`` on bad settings and paths: an error line with a code, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefleet.cli.main import cli
from edgefleet.server.store import make_engine
from edgefleet.server.store.migrate import upgrade_to_head

BROKER = "mqtt://edgefleet:broker-pw@127.0.0.1:1883"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    engine = make_engine(f"sqlite:///{directory / 'edgefleet.db'}")
    upgrade_to_head(engine)
    engine.dispose()
    return directory


def _passwd(out: Path, data_dir: Path, mqtt_url: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["hints", "passwd", str(out), "--data-dir", str(data_dir)],
        env={"EDGEFLEET_MQTT_URL": mqtt_url, "EDGEFLEET_DATABASE_URL": None, "EDGEFLEET_DATA_DIR": None},
    )
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def test_a_good_data_dir_and_url_write_the_file(data_dir: Path, tmp_path: Path) -> None:
    code, err = _passwd(tmp_path / "passwd", data_dir, BROKER)
    assert code == 0, err
    assert (tmp_path / "passwd").read_text().startswith("edgefleet:$7$")


@pytest.mark.parametrize("url", ["notaurl", "http://broker:1883", "mqtt://[::1", "mqtt://host:99999"])
def test_a_broker_url_that_is_not_one_is_refused(data_dir: Path, tmp_path: Path, url: str) -> None:
    code, err = _passwd(tmp_path / "passwd", data_dir, url)
    assert code == 1
    assert "error [invalid_configuration]" in err
    assert not (tmp_path / "passwd").exists()


def test_a_mistyped_data_dir_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    code, err = _passwd(tmp_path / "passwd", missing, BROKER)
    assert code == 1
    assert "error [invalid_configuration]" in err
    assert not missing.exists()  # no empty database, no new MQTT secret
    assert not (tmp_path / "passwd").exists()


def test_an_unwritable_output_is_an_error_code(data_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, err = _passwd(blocker / "passwd", data_dir, BROKER)
    assert code == 5
    assert "error [file_unwritable]" in err
