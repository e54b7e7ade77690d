"""Downloads over a real HTTP server on 127.0.0.1 (tests/http_server.py), not a mock of urllib.

Success with progress, a checksum mismatch, a refused connection and a download cut short;
in every failure no file is left under the final name (nor a temporary one).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hexssl.cli import main
from hexssl.data.download import ChecksumError, DownloadError, download, fetch
from hexssl.data.tiny_imagenet import ARCHIVE

from .conftest import write_cifar10, write_tiny_zip

SERVER = Path(__file__).resolve().parents[1] / "http_server.py"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, the folder it serves): tests/http_server.py in a subprocess, stopped after."""
    www = tmp_path / "www"
    www.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(www)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), f"tests/http_server.py did not start (printed {port!r})"
        yield f"http://127.0.0.1:{port}", www
    finally:
        proc.terminate()  # the server this fixture started
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blob(www: Path, size: int = 3 * (1 << 20) + 123) -> tuple[str, bytes]:
    data = os.urandom(size)
    (www / "blob.bin").write_bytes(data)
    return "blob.bin", data


def test_download_shows_progress_and_writes_the_file(http_server, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url, www = http_server
    name, data = blob(www)
    dest = tmp_path / "dest"
    got = download(f"{url}/{name}", dest, f"sha256:{hashlib.sha256(data).hexdigest()}")
    assert got == dest / name and got.read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == [name]  # no .part file
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith(f"[hexssl] downloading {url}/{name}: ") for line in lines)
    assert lines[-1].endswith("3.1/3.1 MB (100%)") and len(lines) >= 3  # in steps of 10 %


def test_checksum_mismatch_leaves_no_file(http_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, www = http_server
    name, _ = blob(www, 1000)
    with pytest.raises(ChecksumError, match=r"expected 0000.*nothing was kept"):
        fetch(f"{url}/{name}", tmp_path / "d" / name, "sha256:" + "0" * 64)
    assert not (tmp_path / "d").exists()  # not even the folder made for the file


def test_a_download_cut_short_leaves_no_file(http_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, www = http_server
    name, _ = blob(www, 3 << 20)
    with pytest.raises(DownloadError, match=f"cannot download {url}/cut/{name} .*closed after"):
        fetch(f"{url}/cut/{name}", tmp_path / "d" / name)  # no checksum: the length tells
    assert not (tmp_path / "d").exists()  # not even the folder made for the file


def test_http_errors_name_the_url(http_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = http_server
    with pytest.raises(DownloadError, match=f"cannot download {url}/absent.zip .*404"):
        fetch(f"{url}/absent.zip", tmp_path / "absent.zip")
    assert not (tmp_path / "absent.zip").exists()


def test_offline_is_one_line_naming_the_url_and_a_local_copy(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = f"http://127.0.0.1:{free_port()}/tiny-imagenet-200.zip"
    out = tmp_path / "out"
    assert main(["data", "get", "tiny-imagenet-hier50", "--from", url, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hexssl: error: cannot download {url} (") and err.count("\n") == 1
    assert "refused" in err and "--from tiny-imagenet-200.zip" in err
    assert not out.exists()


def test_data_get_downloads_the_zip_builds_and_removes_it(
    http_server, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    url, www = http_server
    write_tiny_zip(www / "tiny-imagenet-200.zip")
    out = tmp_path / "out"
    args = ["data", "get", "tiny-imagenet-hier50", "--out", str(out)]
    assert main([*args, "--from", f"{url}/tiny-imagenet-200.zip"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [ARCHIVE]  # the zip is gone
    with tarfile.open(out / ARCHIVE) as tf:
        assert len(tf.getnames()) == 1 + 50 * 5
    captured = capsys.readouterr()
    assert f"use it with data.root={out}" in captured.out
    assert "other files than the study's archive" in captured.err  # not the real zip


def test_data_get_cifar10_downloads_checks_and_extracts_into_the_cache(
    http_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    """The official archive's path end to end, served from 127.0.0.1 with its checksum;
    then cifar10 without data.root reads what was extracted."""
    from hexssl.data import build_dataset, download
    from hexssl.data.base import datasets_dir

    url, www = http_server
    images = write_cifar10(tmp_path / "made")
    archive = www / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "made" / "cifar-10-batches-py", "cifar-10-batches-py")
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    res = download.Resource(f"{url}/cifar-10-python.tar.gz", f"md5:{digest}")
    monkeypatch.setitem(download.RESOURCES, "cifar10", res)
    assert main(["data", "get", "cifar10"]) == 0
    assert "extracted into" in capsys.readouterr().out
    assert sorted(p.name for p in datasets_dir().iterdir()) == [
        "cifar-10-batches-py", "cifar-10-python.tar.gz",
    ]  # fmt: skip
    assert build_dataset("cifar10", None, "train").images.tolist() == images.tolist()
