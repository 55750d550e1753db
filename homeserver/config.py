"""The configuration file: one YAML document validated by pydantic.

An invalid file stops the start with a message naming the key and the problem.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from homeserver.protocol import ids

DATABASE_ENV = "HOMESERVER_DATABASE"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8008, ge=1, le=65535)


class RegistrationConfig(_Section):
    # Closed unless the admin opens it: strangers must not create accounts.
    enabled: bool = False
    # With enabled, also require a registration token (m.login.registration_token).
    require_token: bool = False
    # For Synapse-compatible shared-secret registration (/_synapse/admin/v1/register).
    shared_secret: str | None = None


class PasswordConfig(_Section):
    """Rules for new passwords (register-user, /register, /account/password), as Synapse's."""

    minimum_length: int = Field(8, ge=1, le=512)
    require_digit: bool = False
    require_symbol: bool = False
    require_lowercase: bool = False
    require_uppercase: bool = False


class RateLimit(_Section):
    per_second: float = Field(0.2, gt=0)
    burst: int = Field(5, ge=1)


class RateLimitsConfig(_Section):
    login: RateLimit = RateLimit(per_second=0.2, burst=5)
    registration: RateLimit = RateLimit(per_second=0.1, burst=3)


class LimitsConfig(_Section):
    # JSON request bodies larger than this are refused with 413 before they are read.
    max_request_body_bytes: int = Field(1_048_576, ge=65_536)


class ThumbnailSize(_Section):
    width: int = Field(ge=1, le=4096)
    height: int = Field(ge=1, le=4096)
    method: Literal["crop", "scale"]


def _ip_ranges(cls: type, value: list[str]) -> list[str]:
    """Each entry is an IP address or CIDR range (address allow and deny lists)."""
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR range")
    return value


class UrlPreviewConfig(_Section):
    # Off unless the admin opts in: previews tell every linked site that someone
    # here posted its URL, and make the server fetch URLs its users choose.
    enabled: bool = False
    # Address ranges (CIDR) that may be fetched although they are not public,
    # e.g. "192.168.1.0/24" for a wiki on the home network. Loopback, private,
    # link-local, CGNAT, multicast and reserved ranges are denied otherwise.
    ip_range_allowlist: list[str] = []
    # Further ranges to deny, on top of the non-public ones.
    ip_range_denylist: list[str] = []
    # A page or image larger than this is not read past the limit.
    max_page_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Whole fetch of a page and its image, redirects included.
    timeout_seconds: float = Field(10, gt=0, le=120)
    max_redirects: int = Field(5, ge=0, le=20)
    # How long a preview is served from the cache before the page is fetched again.
    cache_seconds: int = Field(3600, ge=0, le=7 * 24 * 3600)
    accept_language: str = "en"

    _valid_ranges = field_validator("ip_range_allowlist", "ip_range_denylist")(_ip_ranges)


class MediaConfig(_Section):
    # Larger uploads are refused with 413 M_TOO_LARGE, before their body is read.
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1)
    # Disk the media store may use in all (uploads, thumbnails, cached remote
    # media, each distinct file once); none means unlimited.
    storage_quota_bytes: int | None = Field(None, ge=0)
    # Where users are told to turn when the quota is full (a mailto: or https: URI).
    admin_contact: str | None = None
    # Uploads (and /create) allowed per user.
    upload_rate_limit: RateLimit = RateLimit(per_second=1, burst=30)
    # Ids from POST /_matrix/media/v1/create a user may hold before uploading to them.
    max_pending_uploads: int = Field(10, ge=1)
    # An id from /create not uploaded to within this time is forgotten (the spec suggests 24 h).
    unused_upload_expiry_ms: int = Field(24 * 3600 * 1000, ge=1000)
    # Made for every image at upload; other sizes are made when asked for.
    thumbnail_sizes: list[ThumbnailSize] = [
        ThumbnailSize(width=32, height=32, method="crop"),
        ThumbnailSize(width=96, height=96, method="crop"),
        ThumbnailSize(width=320, height=240, method="scale"),
        ThumbnailSize(width=640, height=480, method="scale"),
        ThumbnailSize(width=800, height=600, method="scale"),
    ]
    # Images with more pixels are never decoded (decompression bombs).
    max_image_pixels: int = Field(32_000_000, ge=1)
    # Thumbnails made at once, each in its own thread.
    thumbnail_threads: int = Field(2, ge=1, le=32)
    # The unauthenticated /_matrix/media/v3/download and /thumbnail routes are
    # frozen (spec v1.11): they serve only media uploaded before this date (UTC).
    # None: they serve nothing (404 M_NOT_FOUND).
    legacy_unauthenticated_cutoff: datetime.date | None = None
    # GET /_matrix/client/v1/media/preview_url.
    url_preview: UrlPreviewConfig = UrlPreviewConfig()


class SupportContact(_Section):
    """One contact of /.well-known/matrix/support: a Matrix id, an email address, or both."""

    matrix_id: str | None = None
    email_address: str | None = Field(None, min_length=3)
    # "m.role.admin", "m.role.security", or a namespaced role of your own.
    role: str = Field("m.role.admin", min_length=1)

    @model_validator(mode="after")
    def _reachable(self) -> "SupportContact":
        if self.matrix_id is None and self.email_address is None:
            raise ValueError("a contact needs matrix_id or email_address")
        if self.matrix_id is not None and not ids.is_valid_user_id(self.matrix_id):
            raise ValueError(f"matrix_id {self.matrix_id!r} is not a user id")
        return self


class SupportConfig(_Section):
    # Who to ask for help (spec: GET /.well-known/matrix/support); that path answers
    # 404 while neither contacts nor support_page is set.
    contacts: list[SupportContact] = []
    support_page: str | None = Field(None, min_length=1)


class WellKnownConfig(_Section):
    # What /.well-known/matrix/client advertises; defaults to public_baseurl.
    client_base_url: str | None = None
    # What /.well-known/matrix/server advertises ("host:port"); omitted when unset.
    server: str | None = None
    # What /.well-known/matrix/support advertises: the server admins' contacts.
    support: SupportConfig = SupportConfig()


class TurnConfig(_Section):
    """GET /_matrix/client/v3/voip/turnServer: the TURN relay clients use for calls."""

    # The TURN server's URIs as clients should use them, e.g.
    # "turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp".
    # Empty: TURN is off and the endpoint answers {} (clients then try without a relay).
    uris: list[str] = []
    # coturn's static-auth-secret (use-auth-secret): each user gets a username and
    # password that expire after user_lifetime. The preferred way.
    shared_secret: str | None = Field(None, min_length=1)
    # Or one fixed account on the TURN server, handed to every user. It never expires,
    # so anyone who once had it can relay through the TURN server for ever.
    username: str | None = Field(None, min_length=1)
    password: str | None = Field(None, min_length=1)
    # Seconds the credentials stay valid ("30m", "1h", "1d" are accepted too).
    user_lifetime: int = Field(3600, ge=60, le=7 * 24 * 3600)
    # Accepted so that Synapse-style configurations load; this server has no guest accounts.
    allow_guests: bool = True
    # Requests per user: clients ask when a call starts and when the ttl runs out.
    rate_limit: RateLimit = RateLimit(per_second=0.5, burst=10)

    @field_validator("uris")
    @classmethod
    def _valid_uris(cls, value: list[str]) -> list[str]:
        for uri in value:
            if not _TURN_URI.fullmatch(uri):
                raise ValueError(
                    f"{uri!r} is not a TURN URI: use turn:HOST[:PORT] or turns:HOST[:PORT],"
                    " optionally followed by ?transport=udp or ?transport=tcp"
                )
        return value

    @field_validator("user_lifetime", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _DURATION.fullmatch(value.strip())
            if not match:
                raise ValueError("must be a number of seconds or a duration such as 30m, 1h, 1d")
            return int(match[1]) * _DURATION_UNITS[match[2] or "s"]
        return value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> "TurnConfig":
        static = self.username is not None or self.password is not None
        if self.shared_secret is not None and static:
            raise ValueError("set either shared_secret or username and password, not both")
        if static and (self.username is None or self.password is None):
            raise ValueError("username and password must be set together")
        if self.uris and self.shared_secret is None and not static:
            raise ValueError("uris are set but neither shared_secret nor username and password")
        if not self.uris and (self.shared_secret is not None or static):
            raise ValueError("credentials are set but uris is empty: list the TURN server's URIs")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.uris)


# RFC 7065: turnURI = scheme ":" host [ ":" port ] [ "?transport=" transport ]
_TURN_URI = re.compile(
    r"turns?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(\?transport=(udp|tcp))?"
)
_DURATION = re.compile(r"([0-9]+)\s*([smhd]?)")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: Any) -> Any:
    """Seconds, or a duration such as "30m", "1h", "1d"."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if not match:
            raise ValueError("must be a number of seconds or a duration such as 30m, 1h, 1d")
        return int(match[1]) * _DURATION_UNITS[match[2] or "s"]
    return value


class MatrixRtcConfig(_Section):
    """Element Call / MatrixRTC (MSC4143): the LiveKit focus clients are pointed at; see docs/turn.md."""

    # The URL of the LiveKit JWT service (lk-jwt-service), e.g. "https://livekit-jwt.example.org".
    # Unset: no focus is advertised and Element Call falls back to its own configuration.
    livekit_service_url: str | None = None

    @field_validator("livekit_service_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def foci(self) -> list[dict[str, str]]:
        if self.livekit_service_url is None:
            return []
        return [{"type": "livekit", "livekit_service_url": self.livekit_service_url}]


class UserDirectoryConfig(_Section):
    # False (as Synapse): a search finds only users who share a room with the searcher
    # or are in a public room. True: every local user, handy for a family server
    # whose accounts the admin creates.
    search_all_users: bool = False


class PresenceConfig(_Section):
    # False: nobody's presence is tracked or shared; PUT /presence is accepted and
    # ignored and /sync carries no presence (as Synapse's use_presence: false).
    enabled: bool = True


class TlsListenConfig(_Section):
    """An optional HTTPS listener of the server's own, serving the same routes.

    Behind a reverse proxy this is not needed; tests use it because Synapse
    reaches a federation peer over HTTPS only, also at 127.0.0.1:PORT.
    """

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    certificate: Path
    private_key: Path


class TrustedKeyServer(_Section):
    server_name: str
    # Pinned keys of the notary ("ed25519:abc" -> base64); unset trusts what it serves over TLS.
    verify_keys: dict[str, str] | None = None


class FederationConfig(_Section):
    # False: no outbound federation and the federation routes answer 403.
    enabled: bool = True
    # TLS certificates of other servers are checked; false only for tests.
    verify_certificates: bool = True
    # Outbound federation never reaches loopback, private, link-local or reserved
    # addresses unless a range here names them (tests: ["127.0.0.1/32"]).
    ip_range_allowlist: list[str] = []
    # Further ranges never to contact, on top of the non-public ones.
    ip_range_denylist: list[str] = []
    # Notaries asked for a server's keys when the server itself cannot be reached.
    trusted_key_servers: list[TrustedKeyServer] = [TrustedKeyServer(server_name="matrix.org")]
    # One outbound request, connection and answer included.
    request_timeout_seconds: float = Field(60, gt=0, le=600)
    # Validity of our server keys as published in /_matrix/key/v2/server.
    key_validity_hours: int = Field(24, ge=1, le=24 * 7)

    _valid_ranges = field_validator("ip_range_allowlist", "ip_range_denylist")(_ip_ranges)


class MetricsConfig(_Section):
    # Prometheus metrics at http://host:port/metrics, a listener of its own (docs/metrics.md).
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9000, ge=1, le=65535)


class ServerNoticesConfig(_Section):
    """Server notices (the admin API's send_server_notice): messages from a system user, each
    user's in a room of their own. Off by default, as Synapse's."""

    enabled: bool = False
    # The system user is created on first use; a regular account of that name is never used.
    system_mxid_localpart: str = "server"
    system_mxid_display_name: str = "Server Notices"
    room_name: str = "Server Notices"


class RetentionConfig(_Section):
    """Message retention and the remote media cache's age; see docs/configuration.md#retention."""

    # Off: nothing is ever purged by age.
    enabled: bool = False
    # Seconds (or "30d") a message lives in rooms without an m.room.retention policy; None: forever.
    default_max_lifetime: int | None = Field(None, ge=60)
    # Bounds on any room's max_lifetime (Synapse's allowed_lifetime_min/max); None: no bound.
    allowed_lifetime_min: int | None = Field(None, ge=60)
    allowed_lifetime_max: int | None = Field(None, ge=60)
    # How often the purge job runs.
    purge_interval: int = Field(86400, ge=60)
    # Cached media of other servers not used for this long is dropped; None: kept.
    remote_media_max_age: int | None = Field(90 * 86400, ge=3600)

    @field_validator("default_max_lifetime", "allowed_lifetime_min", "allowed_lifetime_max",
                     "purge_interval", "remote_media_max_age", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _parse_duration(value)

    @model_validator(mode="after")
    def _ordered_bounds(self) -> "RetentionConfig":
        low, high = self.allowed_lifetime_min, self.allowed_lifetime_max
        if low is not None and high is not None and low > high:
            raise ValueError("allowed_lifetime_min is larger than allowed_lifetime_max")
        return self


class Config(_Section):
    server_name: str
    public_baseurl: str | None = None
    listen: ListenConfig = ListenConfig()
    tls_listen: TlsListenConfig | None = None
    federation: FederationConfig = FederationConfig()
    data_dir: Path = Path("data")
    # A PostgreSQL DSN; none means an embedded PostgreSQL in data_dir/postgres.
    database: str | None = None
    signing_key_path: Path | None = None
    registration: RegistrationConfig = RegistrationConfig()
    password_config: PasswordConfig = PasswordConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    limits: LimitsConfig = LimitsConfig()
    well_known: WellKnownConfig = WellKnownConfig()
    media: MediaConfig = MediaConfig()
    turn: TurnConfig = TurnConfig()
    matrix_rtc: MatrixRtcConfig = MatrixRtcConfig()
    # Seconds an access token issued with refresh_token: true lives before the client must
    # POST /refresh ("5m", "1h" accepted). None: refresh tokens are not offered. Tokens of
    # clients that do not ask for refresh never expire.
    access_token_lifetime: int | None = Field(300, ge=10, le=365 * 86400)
    user_directory: UserDirectoryConfig = UserDirectoryConfig()
    presence: PresenceConfig = PresenceConfig()
    # bcrypt cost factor: 12 takes about a quarter of a second per hash.
    password_hash_rounds: int = Field(12, ge=4, le=31)
    log_level: str = "INFO"
    database_pool_size: int = Field(10, ge=2, le=100)
    # Reverse proxies (IPs or CIDR ranges) whose X-Forwarded-For names the client; from any
    # other peer the header is ignored, so a client cannot choose its own address.
    trusted_proxies: list[str] = []
    metrics: MetricsConfig = MetricsConfig()
    retention: RetentionConfig = RetentionConfig()
    server_notices: ServerNoticesConfig = ServerNoticesConfig()

    _valid_proxies = field_validator("trusted_proxies")(_ip_ranges)

    @field_validator("access_token_lifetime", mode="before")
    @classmethod
    def _lifetime(cls, value: Any) -> Any:
        return _parse_duration(value)

    @field_validator("server_name")
    @classmethod
    def _valid_server_name(cls, value: str) -> str:
        if not ids.is_valid_server_name(value):
            raise ValueError("not a valid Matrix server name (host name, IP or [IPv6], optional :port)")
        return value

    @field_validator("log_level")
    @classmethod
    def _valid_log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @property
    def signing_key_file(self) -> Path:
        return self.signing_key_path or self.data_dir / "signing.key"

    @property
    def client_base_url(self) -> str | None:
        """The base_url of /.well-known/matrix/client, or None when none is known.

        Without public_baseurl, a server named after this machine (the first-run
        "localhost") is reached where it listens; for any other name the URL is
        the reverse proxy's, which only the admin knows.
        """
        if self.well_known.client_base_url or self.public_baseurl:
            return self.well_known.client_base_url or self.public_baseurl
        # The server name's own port is for federation; clients reach the listener.
        host = re.sub(r":[0-9]+$", "", self.server_name)
        if host.lower() not in _LOOPBACK_NAMES or self.listen.host not in _LOCAL_LISTENERS:
            return None
        return f"http://{host}:{self.listen.port}"

    @property
    def database_dsn(self) -> str | None:
        return os.environ.get(DATABASE_ENV) or self.database


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# Listen addresses that a loopback name reaches.
_LOCAL_LISTENERS = ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::")


def load_config(path: Path) -> Config:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create one with `homeserver generate-config`)")
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the file must be a YAML mapping of keys to values")
    config = parse_config(raw, source=str(path))
    if not config.data_dir.is_absolute():
        # Relative paths are relative to the configuration file, not the working directory.
        config = config.model_copy(update={"data_dir": (path.parent / config.data_dir).resolve()})
    if config.signing_key_path and not config.signing_key_path.is_absolute():
        config = config.model_copy(
            update={"signing_key_path": (path.parent / config.signing_key_path).resolve()}
        )
    return config


def parse_config(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(f"  {key}: {message}")
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(problems))


def render_default_config(server_name: str, data_dir: str = "data") -> str:
    """A commented configuration file with fresh secrets."""
    shared_secret = secrets.token_urlsafe(32)
    return f"""\
# Homeserver configuration. Every key is documented in docs/configuration.md.

# The name in your users' ids (@alice:{server_name}). It cannot change later.
server_name: "{server_name}"

# The URL clients reach this server at, through your reverse proxy. Set it, so
# that /.well-known/matrix/client tells Element where the server is when a user
# types just {server_name}. Unset, that path answers 404 (except for localhost,
# which is reached where the server listens).
# public_baseurl: "https://matrix.{server_name}/"

# Where the server listens. Keep 127.0.0.1 behind a reverse proxy (nginx, Caddy).
listen:
  host: 127.0.0.1
  port: 8008

# Signing key, media and the embedded database live here (relative to this file).
data_dir: "{data_dir}"

# PostgreSQL to use, e.g. "postgresql://synapse:secret@127.0.0.1/homeserver".
# Leave unset to run an embedded PostgreSQL inside data_dir. The environment
# variable {DATABASE_ENV} overrides this.
# database: null

registration:
  # Anyone may register when true. Keep false and create accounts with
  # `homeserver register-user`, or also set require_token: true and hand out tokens.
  enabled: false
  require_token: false
  # For admin tools that register users with a shared secret. Keep it secret.
  shared_secret: "{shared_secret}"

# What a new password must have (register-user, registration, password change).
password_config:
  minimum_length: 8
  require_digit: false
  require_symbol: false
  require_lowercase: false
  require_uppercase: false

# Login and registration attempts allowed per client address.
rate_limits:
  login: {{per_second: 0.2, burst: 5}}
  registration: {{per_second: 0.1, burst: 3}}

limits:
  max_request_body_bytes: 1048576

# The reverse proxy in front (nginx, Caddy on this machine): its X-Forwarded-For
# header gives the client's address for rate limits and the device list. From
# any other address the header is ignored. Add the proxy's address if it runs
# elsewhere (another host, a container).
trusted_proxies: ["127.0.0.1", "::1"]

# Prometheus metrics on a listener of their own; see docs/metrics.md.
# metrics:
#   enabled: true
#   host: 127.0.0.1
#   port: 9000

# What /.well-known/matrix/client and /.well-known/matrix/server announce.
# well_known:
#   client_base_url: "https://matrix.{server_name}/"
#   server: "matrix.{server_name}:443"

# A TURN server (coturn) relays voice and video calls; see docs/turn.md.
# turn:
#   uris: ["turn:matrix.{server_name}:3478?transport=udp", "turns:matrix.{server_name}:5349?transport=tcp"]
#   shared_secret: "the static-auth-secret of /etc/turnserver.conf"
#   user_lifetime: 1h

# Delete messages older than a lifetime: rooms choose theirs with an
# m.room.retention state event (max_lifetime in ms); default_max_lifetime covers
# the others. Also drops cached media of other servers unused for
# remote_media_max_age. See docs/configuration.md#retention.
# retention:
#   enabled: true
#   default_max_lifetime: null     # e.g. 365d; null keeps messages of rooms without a policy
#   allowed_lifetime_min: 1d
#   allowed_lifetime_max: null
#   purge_interval: 1d
#   remote_media_max_age: 90d

password_hash_rounds: 12
log_level: INFO
"""
