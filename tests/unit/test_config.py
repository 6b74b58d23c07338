"""Settings: defaults, precedence flags > env > TOML > default, errors naming the setting."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import cli, config
from bridge.config import SETTINGS, Config, ConfigError, load
from bridge.whip.sdp import IceServer

ROOT = Path(__file__).resolve().parents[2]

# One valid non-default value per setting: (raw text, parsed value, TOML spelling).
NON_DEFAULT = {
    "RTMP_PORT": ("1936", 1936, "1936"),
    "BIND_ADDRESS": ("127.0.0.1", "127.0.0.1", '"127.0.0.1"'),
    "RTMP_CHUNK_SIZE": ("60000", 60000, "60000"),
    "RTMP_PLAY_WHITELIST": (
        "10.0.0.0/8, ::1",
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1")),
        '["10.0.0.0/8", "::1"]',
    ),
    "ID_MAX_LENGTH": ("64", 64, "64"),
    "SSL_PORT": ("8443", 8443, "8443"),
    "SSL_CERT": ("/etc/bridge/cert.pem", "/etc/bridge/cert.pem", '"/etc/bridge/cert.pem"'),
    "SSL_KEY": ("/etc/bridge/key.pem", "/etc/bridge/key.pem", '"/etc/bridge/key.pem"'),
    "SSL_CHECK_RELOAD_SECONDS": ("5", 5.0, "5"),
    "HTTP_PORT": ("0", 0, "0"),
    "HTTPS_PORT": ("8443", 8443, "8443"),
    "TRUSTED_PROXIES": ("127.0.0.1", (ipaddress.ip_network("127.0.0.1"),), '"127.0.0.1"'),
    "GOP_CACHE_SIZE_MB": ("0", 0, "0"),
    "RTMP_WRITE_MERGE_MS": ("0", 0, "0"),
    "RTMP_HOST": ("live.example.com", "live.example.com", '"live.example.com"'),
    "CALLBACK_URL": (
        "http://127.0.0.1:9000/cb",
        "http://127.0.0.1:9000/cb",
        '"http://127.0.0.1:9000/cb"',
    ),
    "JWT_SECRET": ("s3cret", "s3cret", '"s3cret"'),
    "CUSTOM_JWT_SUBJECT": ("publish", "publish", '"publish"'),
    "CALLBACK_TIMEOUT_SECONDS": ("2.5", 2.5, "2.5"),
    "MAX_IP_CONCURRENT_CONNECTIONS": ("10", 10, "10"),
    "CONCURRENT_LIMIT_WHITELIST": ("*", None, '"*"'),
    "REDIS_USE": ("YES", True, "true"),
    "REDIS_HOST": ("10.0.0.5", "10.0.0.5", '"10.0.0.5"'),
    "REDIS_PORT": ("6380", 6380, "6380"),
    "REDIS_PASSWORD": ("pw", "pw", '"pw"'),
    "REDIS_TLS": ("YES", True, "true"),
    "REDIS_CHANNEL": ("commands", "commands", '"commands"'),
    "API_TOKEN": ("t0ken", "t0ken", '"t0ken"'),
    "HLS_FORMAT": ("fmp4", "fmp4", '"fmp4"'),
    "HLS_SEGMENT_SECONDS": ("4", 4.0, "4"),
    "HLS_PART_SECONDS": ("0", 0.0, "0"),
    "HLS_WINDOW": ("10", 10, "10"),
    "UNPUBLISH_GRACE_SECONDS": ("0.25", 0.25, "0.25"),
    "WEBRTC_ADDRESSES": ("127.0.0.1, ::1", ("127.0.0.1", "::1"), '["127.0.0.1", "::1"]'),
    "WEBRTC_UDP_PORTS": ("50000-50100", (50000, 50100), '"50000-50100"'),
    "WEBRTC_PUBLIC_IPS": ("203.0.113.5", ("203.0.113.5",), '"203.0.113.5"'),
    "WEBRTC_ICE_SERVERS": (
        "stun:stun.example.net:3478,turn:turn.example.net?transport=udp|user|pass",
        (
            IceServer("stun:stun.example.net:3478"),
            IceServer("turn:turn.example.net?transport=udp", "user", "pass"),
        ),
        '["stun:stun.example.net:3478", "turn:turn.example.net?transport=udp|user|pass"]',
    ),
    "WEBRTC_CONNECT_TIMEOUT_SECONDS": ("3", 3.0, "3"),
    "WEBRTC_MAX_SESSIONS": ("20", 20, "20"),
    "LOG_REQUESTS": ("NO", False, "false"),
    "LOG_DEBUG": ("yes", True, "true"),
}

DEFAULTS = Config(
    rtmp_port=1935,
    bind_address="",
    ssl_port=443,
    ssl_cert="",
    ssl_key="",
    ssl_check_reload_seconds=60.0,
    http_port=8080,
    https_port=0,
    trusted_proxies=(),
    rtmp_chunk_size=4096,
    rtmp_play_whitelist=None,
    rtmp_write_merge_ms=20,
    id_max_length=128,
    gop_cache_size_mb=256,
    rtmp_host="",
    callback_url="",
    jwt_secret="",
    custom_jwt_subject="rtmp_event",
    callback_timeout_seconds=5.0,
    max_ip_concurrent_connections=4,
    concurrent_limit_whitelist=(),
    redis_use=False,
    redis_host="127.0.0.1",
    redis_port=6379,
    redis_password="",
    redis_tls=False,
    redis_channel="rtmp_commands",
    api_token="",
    hls_format="mpegts",
    hls_segment_seconds=2.0,
    hls_part_seconds=0.2,
    hls_window=6,
    unpublish_grace_seconds=5.0,
    webrtc_addresses=(),
    webrtc_udp_ports=None,
    webrtc_public_ips=(),
    webrtc_ice_servers=(),
    webrtc_connect_timeout_seconds=15.0,
    webrtc_max_sessions=500,
    log_requests=True,
    log_debug=False,
)


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_table_covers_every_setting() -> None:
    assert set(NON_DEFAULT) == {setting.name for setting in SETTINGS}


def test_defaults() -> None:
    settings = load({}, environ={})
    assert settings == DEFAULTS
    assert settings.bind_host is None


def test_defaults_match_the_contract() -> None:
    """CONTRACT.md's table gives these defaults; the table of settings must agree."""
    by_name = {setting.name: setting.default for setting in SETTINGS}
    assert by_name["RTMP_PORT"] == "1935"
    assert by_name["RTMP_CHUNK_SIZE"] == "4096"
    assert by_name["RTMP_PLAY_WHITELIST"] == "*"
    assert by_name["ID_MAX_LENGTH"] == "128"
    assert by_name["GOP_CACHE_SIZE_MB"] == "256"
    assert by_name["LOG_REQUESTS"] == "YES"
    assert by_name["LOG_DEBUG"] == "NO"


def test_bind_host() -> None:
    assert load({}, environ={"BIND_ADDRESS": "::1"}).bind_host == "::1"


# Settings that are only valid with others set too (checked together at start-up).
COMPANIONS = {
    "SSL_CERT": {"SSL_KEY": "/k.pem"},
    "SSL_KEY": {"SSL_CERT": "/c.pem"},
    "HTTPS_PORT": {"SSL_CERT": "/c.pem", "SSL_KEY": "/k.pem"},
    "CALLBACK_URL": {"JWT_SECRET": "s3cret"},
}


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_every_setting_from_each_source(name: str, tmp_path: Path) -> None:
    raw, parsed, toml = NON_DEFAULT[name]
    attr = name.lower()
    extra = COMPANIONS.get(name, {})
    assert getattr(load({name: raw, **extra}, environ={}), attr) == parsed
    assert getattr(load({}, environ={name: raw, **extra}), attr) == parsed
    lines = [f"{name} = {toml}"] + [f'{k} = "{v}"' for k, v in extra.items()]
    path = write_toml(tmp_path, "\n".join(lines) + "\n")
    assert getattr(load({}, environ={}, config_file=path), attr) == parsed
    # Only that one setting (and its companions) moved.
    others = load({name: raw, **extra}, environ={})
    moved = {attr} | {k.lower() for k in extra}
    for field in DEFAULTS.__dataclass_fields__:
        if field not in moved:
            assert getattr(others, field) == getattr(DEFAULTS, field)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"SSL_CERT": "/c.pem"}, "SSL_KEY"),
        ({"SSL_KEY": "/k.pem"}, "SSL_CERT"),
        ({"HTTPS_PORT": "8443"}, "HTTPS_PORT"),
        ({"CALLBACK_URL": "http://127.0.0.1/cb"}, "JWT_SECRET"),
    ],
)
def test_tls_settings_go_together(given: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(given, environ={})
    assert info.value.name == named


@pytest.mark.parametrize("key", ["rtmp_port", "RTMP_PORT", "rtmp-port", "Rtmp_Port"])
def test_toml_key_spellings(key: str, tmp_path: Path) -> None:
    path = write_toml(tmp_path, f"{key} = 1936\n")
    assert load({}, environ={}, config_file=path).rtmp_port == 1936


def test_precedence_flags_env_file_default(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "rtmp_port = 1936\nRTMP_CHUNK_SIZE = 8192\nlog_debug = true\n")
    environ = {"RTMP_PORT": "1937", "RTMP_CHUNK_SIZE": "16384"}
    flags = {"RTMP_PORT": "1938", "RTMP_CHUNK_SIZE": None, "LOG_DEBUG": None}
    settings = load(flags, environ=environ, config_file=path)
    assert settings.rtmp_port == 1938  # flag beats env and file
    assert settings.rtmp_chunk_size == 16384  # env beats file; a None flag is "not given"
    assert settings.log_debug is True  # file beats default
    assert settings.id_max_length == 128  # default
    assert load({}, environ=environ, config_file=path).rtmp_port == 1937
    assert load({}, environ={}, config_file=path).rtmp_port == 1936
    assert load({}, environ={}).rtmp_port == 1935


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTMP_PORT", "1940")
    assert load({}).rtmp_port == 1940


def test_a_bad_weaker_source_is_still_an_error(tmp_path: Path) -> None:
    """Only the value that wins is parsed: a bad env value hidden by a flag is not read."""
    assert load({"RTMP_PORT": "1938"}, environ={"RTMP_PORT": "bad"}).rtmp_port == 1938
    path = write_toml(tmp_path, "RTMP_PORT = 1936\n")
    with pytest.raises(ConfigError):
        load({}, environ={"RTMP_PORT": "bad"}, config_file=path)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("RTMP_PORT", "notaport"),
        ("RTMP_PORT", "70000"),
        ("RTMP_PORT", "-1"),
        ("RTMP_PORT", ""),
        ("RTMP_PORT", "19.35"),
        ("RTMP_CHUNK_SIZE", "0"),
        ("RTMP_CHUNK_SIZE", "127"),
        ("RTMP_CHUNK_SIZE", "65537"),
        ("RTMP_CHUNK_SIZE", "4k"),
        ("ID_MAX_LENGTH", "0"),
        ("GOP_CACHE_SIZE_MB", "-1"),
        ("UNPUBLISH_GRACE_SECONDS", "-0.5"),
        ("UNPUBLISH_GRACE_SECONDS", "nan"),
        ("UNPUBLISH_GRACE_SECONDS", "inf"),
        ("UNPUBLISH_GRACE_SECONDS", "soon"),
        ("LOG_DEBUG", "maybe"),
        ("LOG_REQUESTS", ""),
        ("RTMP_PLAY_WHITELIST", "10.0.0.0/33"),
        ("RTMP_PLAY_WHITELIST", "10.0.0.0/8, example.com"),
    ],
)
def test_bad_values_name_the_setting(name: str, raw: str) -> None:
    for flags, environ in (({name: raw}, {}), ({}, {name: raw})):
        with pytest.raises(ConfigError) as info:
            load(flags, environ=environ)
        assert info.value.name == name
        message = str(info.value)
        assert message.startswith(f"{name}: ")
        assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "raw", "parsed"),
    [
        ("RTMP_PORT", " 1936 ", 1936),
        ("RTMP_PORT", "0", 0),
        ("RTMP_PORT", "65535", 65535),
        ("RTMP_CHUNK_SIZE", "128", 128),
        ("RTMP_CHUNK_SIZE", "65536", 65536),
        ("LOG_DEBUG", "on", True),
        ("LOG_DEBUG", "True", True),
        ("LOG_DEBUG", "1", True),
        ("LOG_REQUESTS", "off", False),
        ("LOG_REQUESTS", "false", False),
        ("LOG_REQUESTS", "0", False),
        ("UNPUBLISH_GRACE_SECONDS", "0", 0.0),
        ("UNPUBLISH_GRACE_SECONDS", "3600", 3600.0),
        ("RTMP_PLAY_WHITELIST", "*", None),
        ("BIND_ADDRESS", "  ", ""),
    ],
)
def test_edge_values(name: str, raw: str, parsed: object) -> None:
    assert getattr(load({}, environ={name: raw}), name.lower()) == parsed


def test_unknown_key_in_toml_names_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "rtmp_port = 1936\nrtmp_prot = 1937\n")
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=path)
    assert info.value.name == "RTMP_PROT"
    assert "RTMP_PROT" in str(info.value)
    assert path in str(info.value)


def test_toml_table_is_an_unknown_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[rtmp]\nport = 1936\n")
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=path)
    assert info.value.name == "RTMP"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("RTMP_PORT = 70000\n", "RTMP_PORT"),
        ('RTMP_PORT = "http"\n', "RTMP_PORT"),
        ("RTMP_PORT = 1936.0\n", "RTMP_PORT"),
        ('LOG_DEBUG = "maybe"\n', "LOG_DEBUG"),
        ('RTMP_PLAY_WHITELIST = ["10.0.0.0/33"]\n', "RTMP_PLAY_WHITELIST"),
    ],
)
def test_bad_values_in_toml_name_the_setting(text: str, name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=write_toml(tmp_path, text))
    assert info.value.name == name


def test_missing_config_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=path)
    assert info.value.name == "--config"
    assert path in str(info.value)


def test_unreadable_config_file(tmp_path: Path) -> None:
    # A directory cannot be read as a file, even by root (chmod 000 would not stop root).
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=str(tmp_path))
    assert info.value.name == "--config"


@pytest.mark.parametrize("text", ["rtmp_port = \n", "rtmp_port 1936\n", "[[[\n", "a = 1\na = 2\n"])
def test_invalid_toml(text: str, tmp_path: Path) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=path)
    assert info.value.name == "--config"
    assert "TOML" in str(info.value)


def test_non_utf8_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'bind_address = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as info:
        load({}, environ={}, config_file=str(path))
    assert info.value.name == "--config"


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_has_an_env_name_and_a_kebab_flag(setting: config.Setting) -> None:
    assert re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", setting.name)
    assert setting.flag == "--" + setting.name.lower().replace("_", "-")
    assert setting.attr == setting.name.lower()
    assert setting.help
    # The default parses (the table is self-consistent).
    setting.parse(setting.default)
    # The CLI accepts the flag and hands its value to load() under the setting's name.
    raw = NON_DEFAULT[setting.name][0]
    args = cli._parser().parse_args(["serve", setting.flag, raw])
    assert getattr(args, setting.name) == raw
    flags = {s.name: getattr(args, s.name) for s in SETTINGS}
    flags.update(COMPANIONS.get(setting.name, {}))
    assert getattr(load(flags, environ={}), setting.attr) == NON_DEFAULT[setting.name][1]


def test_serve_help_lists_every_env_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    for setting in SETTINGS:
        assert setting.name in result.stdout
        assert setting.flag in result.stdout
    assert "--config" in result.stdout


def test_cli_bad_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    assert cli.main(["serve", "--rtmp-port", "notaport"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "RTMP_PORT" in err
    assert "Traceback" not in err


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert f"| `{setting.name}` | `{setting.flag}` |" in readme, setting.name
