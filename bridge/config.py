"""Settings: one table, read from flags, the environment, a TOML file and defaults.

Strongest first: command-line flags, environment variables, ``--config FILE.toml``,
defaults (/work/shared/CONTRACT.md). Every setting has an UPPER_SNAKE environment name and a
``--lower-kebab`` flag. A bad value raises ``ConfigError`` naming the setting; the CLI prints
it as one line.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from bridge.auth.policy import Network, parse_networks


class ConfigError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def _digits(text: str) -> bool:
    text = text.strip()
    return text.isascii() and text.lstrip("-").isdigit()


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not _digits(text):
            raise ValueError(f"{text!r} is not a whole number")
        value = int(text.strip(), 10)
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low} to {high})")
        return value

    return parse


def _port(text: str) -> int:
    if not _digits(text):
        raise ValueError(f"{text!r} is not a port number (0-65535)")
    value = int(text.strip(), 10)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (0-65535)")
    return value


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low} to {high})")
        return value

    return parse


def _yes_no(text: str) -> bool:
    value = text.strip().upper()
    if value in ("YES", "TRUE", "1", "ON"):
        return True
    if value in ("NO", "FALSE", "0", "OFF"):
        return False
    raise ValueError(f"{text!r} is not YES or NO")


def _text(text: str) -> str:
    return text.strip()


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return value

    return parse


def _url(text: str) -> str:
    text = text.strip()
    if text and not (text.startswith("http://") or text.startswith("https://")):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text


def _ip_list(text: str) -> tuple[str, ...]:
    out = []
    for item in text.replace(",", " ").split():
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address") from None
    return tuple(out)


def _port_range(text: str) -> tuple[int, int] | None:
    text = text.strip()
    if not text:
        return None
    low_text, sep, high_text = text.partition("-")
    if not sep or not _digits(low_text) or not _digits(high_text):
        raise ValueError(f"{text!r} is not a port range such as 50000-50100")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"{text!r}: need 1024 <= first <= last <= 65535")
    return low, high


def _ice_servers(text: str) -> tuple[Any, ...]:
    from bridge.whip.sdp import parse_ice_servers  # pure parsing, no IO

    return parse_ice_servers(text)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    parse: Callable[[str], Any]
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.lower().replace("_", "-")

    @property
    def attr(self) -> str:
        return self.name.lower()


SETTINGS: tuple[Setting, ...] = (
    Setting("RTMP_PORT", "1935", _port, "plain RTMP listener port (0 = off)"),
    Setting("BIND_ADDRESS", "", _text, "address every listener binds to (empty = all interfaces)"),
    Setting(
        "SSL_PORT",
        "443",
        _port,
        "RTMPS (RTMP over TLS) port; on only when SSL_CERT and SSL_KEY are set (0 = off)",
    ),
    Setting("SSL_CERT", "", _text, "PEM certificate (chain) file for RTMPS and HTTPS"),
    Setting("SSL_KEY", "", _text, "PEM private key file for RTMPS and HTTPS"),
    Setting(
        "SSL_CHECK_RELOAD_SECONDS",
        "60",
        _float_range(0, 86400),
        "re-read SSL_CERT/SSL_KEY this often when they change, without dropping sessions "
        "(0 = never)",
    ),
    Setting(
        "HTTP_PORT",
        "8080",
        _port,
        "HTTP service port: RTMPT, HLS, WHIP/WHEP, API, metrics, web pages (0 = off)",
    ),
    Setting(
        "HTTPS_PORT",
        "0",
        _port,
        "the HTTP service over TLS (RTMPTS) with SSL_CERT/SSL_KEY (0 = off)",
    ),
    Setting(
        "TRUSTED_PROXIES",
        "",
        parse_networks,
        "reverse proxies (IPs/CIDRs) whose X-Forwarded-For names the client (empty = none)",
    ),
    Setting("RTMP_CHUNK_SIZE", "4096", _int_range(128, 65536), "outgoing RTMP chunk size"),
    Setting(
        "RTMP_PLAY_WHITELIST",
        "*",
        parse_networks,
        "IPs/CIDRs (v4 and v6, comma separated) allowed to play RTMP; * = everyone",
    ),
    Setting(
        "RTMP_WRITE_MERGE_MS",
        "20",
        _int_range(0, 1000),
        "RTMP players are written in batches this often (ms); 0 = at once, more CPU",
    ),
    Setting("ID_MAX_LENGTH", "128", _int_range(1, 1024), "max length of a channel or key"),
    Setting(
        "GOP_CACHE_SIZE_MB",
        "256",
        _int_range(0, 65536),
        "per-stream cache of the latest GOP in MiB (0 = off)",
    ),
    Setting(
        "UNPUBLISH_GRACE_SECONDS",
        "5",
        _float_range(0, 3600),
        "how long players wait for a publisher that left to come back before they are told "
        "the stream ended",
    ),
    Setting("RTMP_HOST", "", _text, "host name put in callback tokens as rtmp_host"),
    Setting(
        "CALLBACK_URL",
        "",
        _url,
        "publish auth callback: POSTed before a publish starts and when it stops (empty = off)",
    ),
    Setting("JWT_SECRET", "", _text, "HS256 secret that signs the callback's rtmp-event token"),
    Setting("CUSTOM_JWT_SUBJECT", "rtmp_event", _text, "`sub` claim of callback tokens"),
    Setting(
        "CALLBACK_TIMEOUT_SECONDS",
        "5",
        _float_range(0.1, 120),
        "a callback that has not answered by then refuses the publish",
    ),
    Setting(
        "MAX_IP_CONCURRENT_CONNECTIONS",
        "4",
        _int_range(1, 1_000_000),
        "concurrent connections per client IP, across every protocol",
    ),
    Setting(
        "CONCURRENT_LIMIT_WHITELIST",
        "",
        parse_networks,
        "IPs/CIDRs exempt from that limit (* = everyone; empty = nobody)",
    ),
    Setting("REDIS_USE", "NO", _yes_no, "YES: take control commands from Redis pub/sub"),
    Setting("REDIS_HOST", "127.0.0.1", _text, "Redis host"),
    Setting("REDIS_PORT", "6379", _port, "Redis port"),
    Setting("REDIS_PASSWORD", "", _text, "Redis password (empty = none)"),
    Setting("REDIS_TLS", "NO", _yes_no, "YES: connect to Redis over TLS"),
    Setting("REDIS_CHANNEL", "rtmp_commands", _text, "pub/sub channel carrying the commands"),
    Setting(
        "API_TOKEN",
        "",
        _text,
        "Bearer token for /api/v1 (empty = the API answers loopback clients only)",
    ),
    Setting(
        "HLS_FORMAT",
        "mpegts",
        _choice("mpegts", "fmp4"),
        "HLS segment format: mpegts, or fmp4 (CMAF; needed for HEVC)",
    ),
    Setting(
        "HLS_SEGMENT_SECONDS",
        "2",
        _float_range(0.5, 30),
        "HLS segments are cut at the first keyframe after this long",
    ),
    Setting(
        "HLS_PART_SECONDS",
        "0.2",
        _float_range(0, 5),
        "LL-HLS part duration (0 = classic HLS, no parts)",
    ),
    Setting("HLS_WINDOW", "6", _int_range(3, 100), "segments listed in a live HLS playlist"),
    Setting(
        "WEBRTC_ADDRESSES",
        "",
        _ip_list,
        "local IPs WebRTC (ICE) offers to peers (empty = BIND_ADDRESS if set, else every "
        "interface, loopback only when there is nothing else)",
    ),
    Setting(
        "WEBRTC_UDP_PORTS",
        "",
        _port_range,
        "UDP port range for WebRTC media, e.g. 50000-50100, to open in a firewall "
        "(empty = any port)",
    ),
    Setting(
        "WEBRTC_PUBLIC_IPS",
        "",
        _ip_list,
        "public IPs announced as extra WebRTC candidates on the same ports (1:1 NAT, cloud VMs)",
    ),
    Setting(
        "WEBRTC_ICE_SERVERS",
        "",
        _ice_servers,
        "STUN/TURN servers WHIP/WHEP clients are told to use (Link headers): comma "
        "separated URL or URL|USERNAME|CREDENTIAL (empty = none)",
    ),
    Setting(
        "WEBRTC_CONNECT_TIMEOUT_SECONDS",
        "15",
        _float_range(1, 300),
        "a WHIP/WHEP session whose ICE and DTLS are not up by then is closed",
    ),
    Setting(
        "WEBRTC_MAX_SESSIONS",
        "500",
        _int_range(1, 100_000),
        "WHIP and WHEP sessions at once; more are answered 503",
    ),
    Setting("LOG_REQUESTS", "YES", _yes_no, "log one line per session open and close"),
    Setting("LOG_DEBUG", "NO", _yes_no, "debug logging"),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    rtmp_port: int
    bind_address: str
    ssl_port: int
    ssl_cert: str
    ssl_key: str
    ssl_check_reload_seconds: float
    http_port: int
    https_port: int
    trusted_proxies: tuple[Network, ...] | None
    rtmp_chunk_size: int
    rtmp_play_whitelist: tuple[Network, ...] | None
    rtmp_write_merge_ms: int
    id_max_length: int
    gop_cache_size_mb: int
    rtmp_host: str
    callback_url: str
    jwt_secret: str
    custom_jwt_subject: str
    callback_timeout_seconds: float
    max_ip_concurrent_connections: int
    concurrent_limit_whitelist: tuple[Network, ...] | None
    redis_use: bool
    redis_host: str
    redis_port: int
    redis_password: str
    redis_tls: bool
    redis_channel: str
    api_token: str
    hls_format: str
    hls_segment_seconds: float
    hls_part_seconds: float
    hls_window: int
    unpublish_grace_seconds: float
    webrtc_addresses: tuple[str, ...]
    webrtc_udp_ports: tuple[int, int] | None
    webrtc_public_ips: tuple[str, ...]
    webrtc_ice_servers: tuple[Any, ...]
    webrtc_connect_timeout_seconds: float
    webrtc_max_sessions: int
    log_requests: bool
    log_debug: bool

    @property
    def tls(self) -> bool:
        return bool(self.ssl_cert and self.ssl_key)

    @property
    def bind_host(self) -> str | None:
        """The host for ``asyncio.start_server``: None binds every interface."""
        return self.bind_address or None


assert {f.name for f in fields(Config)} == {s.attr for s in SETTINGS}


def _toml_values(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("--config", f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    values: dict[str, str] = {}
    for key, value in data.items():
        name = key.upper().replace("-", "_")
        if name not in _BY_NAME:
            raise ConfigError(name, f"unknown setting in {path}")
        if isinstance(value, bool):
            values[name] = "YES" if value else "NO"
        elif isinstance(value, list):
            values[name] = ",".join(str(item) for item in value)
        else:
            values[name] = str(value)
    return values


def load(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Config:
    """Build the configuration. ``flags`` maps setting names to what the user gave on the
    command line (None where nothing was given)."""
    environ = os.environ if environ is None else environ
    from_file = _toml_values(config_file) if config_file else {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = flags.get(setting.name)
        if raw is None:
            raw = environ.get(setting.name)
        if raw is None:
            raw = from_file.get(setting.name)
        if raw is None:
            raw = setting.default
        try:
            values[setting.attr] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(setting.name, str(exc)) from None
    config = Config(**values)
    if bool(config.ssl_cert) != bool(config.ssl_key):
        missing = "SSL_KEY" if config.ssl_cert else "SSL_CERT"
        raise ConfigError(missing, "SSL_CERT and SSL_KEY must be set together")
    if config.callback_url and not config.jwt_secret:
        raise ConfigError("JWT_SECRET", "CALLBACK_URL needs a JWT_SECRET to sign its tokens")
    if config.hls_part_seconds and config.hls_part_seconds * 2 > config.hls_segment_seconds:
        raise ConfigError(
            "HLS_PART_SECONDS", "must be at most half of HLS_SEGMENT_SECONDS (or 0 for no parts)"
        )
    if config.https_port and not config.ssl_cert:
        raise ConfigError("HTTPS_PORT", "needs SSL_CERT and SSL_KEY")
    return config
