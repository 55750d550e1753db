"""A server that cannot start says why in one line and exits non-zero, without a traceback."""

import socket

import yaml

from homeserver.cli import main


def _write(tmp_path, **config):
    path = tmp_path / "homeserver.yaml"
    path.write_text(yaml.safe_dump({"server_name": "example.org", "data_dir": str(tmp_path / "data"), **config}))
    return path


def test_unreachable_database_is_one_line_without_the_password(tmp_path, capsys):
    path = _write(tmp_path, database="postgresql://bob:hunter2@127.0.0.1:1/nothing")
    assert main(["-c", str(path), "run"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use the database postgresql://bob:***@127.0.0.1:1/nothing")
    assert "hunter2" not in err and "Traceback" not in err


def test_port_in_use_is_one_line(tmp_path, capsys, database_dsn, monkeypatch):
    monkeypatch.delenv("HOMESERVER_DATABASE", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = _write(tmp_path, database=database_dsn, listen={"host": "127.0.0.1", "port": port})
        assert main(["-c", str(path), "run"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}")
