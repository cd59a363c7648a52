"""URL policy: https off loopback, loopback works offline, no credentials in URLs, key from env."""

from __future__ import annotations

import pytest

from partcrafter_blender.remote.endpoint import (
    destination_label,
    is_loopback_host,
    online_access_problem,
    parse_server_url,
    resolve_api_key,
)
from partcrafter_blender.remote.errors import InvalidServerURL


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.1", "[::1]", "LOCALHOST.", "foo.localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)
    assert parse_server_url(f"http://{host}:8000").is_loopback


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "192.168.1.5", "localhost.example.com", "0.0.0.0", "[::2]"])
def test_remote_hosts(host: str) -> None:
    assert not is_loopback_host(host)


def test_plain_http_refused_off_loopback() -> None:
    with pytest.raises(InvalidServerURL, match="unencrypted") as err:
        parse_server_url("http://gpu.example.com:8000")
    assert "https://" in str(err.value)
    ep = parse_server_url("https://GPU.example.com:8443/partcrafter/")
    assert ep.base_url == "https://gpu.example.com:8443/partcrafter"
    assert ep.host == "gpu.example.com:8443" and not ep.is_loopback


@pytest.mark.parametrize(
    "url, words",
    [
        ("", "No server URL"),
        ("ftp://example.com", "must start with https://"),
        ("https://user:secret@example.com", "user name or password"),
        ("https://example.com/?key=abc", "'?' or '#'"),
        ("https://:99", "no host"),
        ("http://127.0.0.1:99999", "not valid"),
    ],
)
def test_bad_urls_say_why(url: str, words: str) -> None:
    with pytest.raises(InvalidServerURL, match=words.replace("?", r"\?")) as err:
        parse_server_url(url)
    assert "secret" not in str(err.value)


def test_online_access_rule() -> None:
    remote = parse_server_url("https://gpu.example.com")
    local = parse_server_url("http://127.0.0.1:8000")
    assert online_access_problem(local, online_access=False) is None
    assert online_access_problem(remote, online_access=True) is None
    msg = online_access_problem(remote, online_access=False)
    assert msg and "gpu.example.com" in msg and "--online-mode" in msg and "Allow Online Access" in msg


def test_api_key_from_preferences_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTCRAFTER_API_KEY", " env-key ")
    assert resolve_api_key("") == "env-key"
    assert resolve_api_key("pref-key") == "pref-key"
    monkeypatch.delenv("PARTCRAFTER_API_KEY")
    assert resolve_api_key("") == ""


def test_destination_badge() -> None:
    assert destination_label("LOCAL", "https://gpu.example.com") == "this computer"
    assert destination_label("SERVER", "https://gpu.example.com") == "gpu.example.com"
    assert destination_label("SERVER", "http://127.0.0.1:8000") == "this computer (127.0.0.1:8000)"
    assert destination_label("SERVER", "http://evil.example.com") == "server (URL not valid)"
