"""Settings for every environment, driven by environment variables.

With nothing set, the project runs on its embedded default: SQLite, a Celery broker on the local
filesystem, SMS and push written to the log. DATABASE_URL, REDIS_URL, SMS_BACKEND and the Firebase
credentials switch to the real services.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


DEBUG = env_bool("DEBUG", False)


def secret_key_read() -> str:
    """The key every other secret here derives from: never one written in this repository.

    1. SECRET_KEY, when set.
    2. Else a key file (SECRET_KEY_FILE, or VAR_DIR/secret-key on the embedded default and under
       DEBUG): created once with a random key, readable by its owner only, then reused, so sessions
       and tokens survive restarts. `make run` and `make test` point SECRET_KEY_FILE at VAR_DIR.
    3. Else (a server on a real database with neither): refuse to start.
    """
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    embedded = not os.environ.get("DATABASE_URL")
    path = os.environ.get("SECRET_KEY_FILE") or (
        str(VAR_DIR / "secret-key") if embedded or DEBUG else ""
    )
    if not path:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE, a file the server may "
            "create) to a long random value kept out of the repository."
        )
    key_file = Path(path)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once (web, worker, beat) agree on one key.
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50))
    for _ in range(50):  # another process may be between creating the file and writing it
        key = key_file.read_text().strip()
        if key:
            return key
        time.sleep(0.02)
    raise ImproperlyConfigured(f"The secret key file {key_file} is empty.")


def secret_derived(name: str, label: str) -> str:
    """A secret of its own (env `name`), else one derived from SECRET_KEY for this use alone:
    a webhook secret or a code-hash key never equals the key, nor another use's key."""
    return (
        os.environ.get(name) or hmac.new(SECRET_KEY.encode(), label.encode(), "sha256").hexdigest()
    )


SECRET_KEY = secret_key_read()
ALLOWED_HOSTS = [
    h
    for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
    if h
]
# Behind a TLS-terminating proxy in production: HTTPS=1 turns on the secure cookie and redirect settings.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    # Before the admin, so its templates (base_site, the dashboard index) take precedence.
    "console",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "accounts",
    "meters",
    "billing",
    "outages",
    "servicerequests",
    "notifications",
    "insight",
    "axes",
]

MIDDLEWARE = [
    "core.metrics.middleware.RequestMetricsMiddleware",  # first: times and counts every answer
    "django.middleware.security.SecurityMiddleware",
    # Before sessions and views: a NUL in a path, query, cookie or form is a 400, never a database error.
    "core.middleware.RefuseNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.replicas.ReplicaReadMiddleware",  # consumer reads to a replica (docs/replicas.md)
    # After authentication: the admin shows times in the staff member's zone when all their
    # utilities share one.
    "core.middleware.StaffZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite by default; PostgreSQL (production, CI) through DATABASE_URL.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=env_int("CONN_MAX_AGE", 60)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a Celery worker started by a test sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# --- Connection pooling (pgbouncer) ---
# DATABASE_POOLED=1: DATABASE_URL names a pgbouncer in transaction mode (docs/pooling.md), where
# each transaction may run on another server connection, so nothing may outlive one.
DATABASE_POOLED = env_bool("DATABASE_POOLED", False)
if DATABASE_POOLED and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # QuerySet.iterator() outside a transaction would DECLARE a cursor WITH HOLD, which lives on
    # one server connection.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    # Never prepare a statement (pgbouncer before 1.21 cannot follow them): Django's default,
    # stated here because the psycopg cursors of core.sql and billing.charging inherit it.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
    # A client connection to pgbouncer holds no server backend between transactions: keep it
    # open unless CONN_MAX_AGE says otherwise (CONN_HEALTH_CHECKS, below, replaces one that a
    # restarted pgbouncer closed).
    if not os.environ.get("CONN_MAX_AGE"):
        DATABASES["default"]["CONN_MAX_AGE"] = None
# --- end connection pooling ---
# --- Read replicas ---
# DATABASE_REPLICA_URLS (comma-separated streaming standbys of the primary) become the aliases
# replica1..N; core.replicas sends consumer reads there while a standby's lag is under
# REPLICA_MAX_LAG_SECONDS, and a user's reads to the primary for READ_YOUR_WRITES_SECONDS after
# they wrote (docs/replicas.md). None set: no router, no middleware, no extra query.
REPLICA_ALIASES: list[str] = []
for _number, _url in enumerate(
    [url.strip() for url in os.environ.get("DATABASE_REPLICA_URLS", "").split(",") if url.strip()],
    start=1,
):
    _alias = f"replica{_number}"
    DATABASES[_alias] = dj_database_url.parse(_url)
    for _key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "DISABLE_SERVER_SIDE_CURSORS"):
        if _key in DATABASES["default"]:
            DATABASES[_alias][_key] = DATABASES["default"][_key]
    _options = DATABASES[_alias].setdefault("OPTIONS", {})
    if "prepare_threshold" in DATABASES["default"].get("OPTIONS", {}):
        _options["prepare_threshold"] = DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    # Named in the standby's pg_stat_activity; a dead standby is given up on in seconds.
    _options.setdefault("application_name", f"smartmeter-{_alias}")
    _options.setdefault("connect_timeout", 3)
    REPLICA_ALIASES.append(_alias)
if REPLICA_ALIASES:
    DATABASE_ROUTERS = ["core.replicas.ReplicaRouter"]
REPLICA_MAX_LAG_SECONDS = float(os.environ.get("REPLICA_MAX_LAG_SECONDS", "5"))
READ_YOUR_WRITES_SECONDS = env_int("READ_YOUR_WRITES_SECONDS", 10)
# Each process measures a standby's lag at most this often, and one that failed after this long.
REPLICA_LAG_CHECK_SECONDS = float(os.environ.get("REPLICA_LAG_CHECK_SECONDS", "2"))
REPLICA_RETRY_SECONDS = env_int("REPLICA_RETRY_SECONDS", 30)
# --- end read replicas ---
# --- Failover ---
# After a failover every process still holds connections (CONN_MAX_AGE) to the dead primary: each
# is checked before a request's first query and replaced when broken, so the first request after a
# promotion is served, not failed. To follow the primary without a restart, DATABASE_URL lists
# every node in libpq's form (docs/failover.md):
#   postgres://user@/db?host=10.0.0.1,10.0.0.2&port=5432,5432&target_session_attrs=read-write
# With several hosts the main database only ever takes one that accepts writes (libpq would
# otherwise take the first that answers, a standby perhaps), and gives up on a silent one (a dead
# machine sends no refusal) after connect_timeout seconds instead of TCP's minutes.
for _database in DATABASES.values():
    _database["CONN_HEALTH_CHECKS"] = env_bool("CONN_HEALTH_CHECKS", True)
if "," in str(DATABASES["default"].get("OPTIONS", {}).get("host", "")):
    DATABASES["default"]["OPTIONS"].setdefault("target_session_attrs", "read-write")
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
# --- end failover ---
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and the broker -------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# The staff dashboard's load chart reads every meter-day of its week: kept this long in the cache
# (console.selectors.slot_totals_kept).
CONSOLE_LOAD_CACHE_SECONDS = env_int("CONSOLE_LOAD_CACHE_SECONDS", 300)

CELERY_QUEUE_DIR = VAR_DIR / "celery"
# The broker (docs/brokers.md): CELERY_BROKER_URL, Redis (redis://) or RabbitMQ (amqp://), else
# REDIS_URL's Redis (which carries the cache either way), else kombu's filesystem transport: a
# broker that needs no server, for the embedded default. Celery itself prefers the environment's
# CELERY_BROKER_URL to this setting: read here too, so that both always agree.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # A task is sent once RabbitMQ has it (on a quorum queue: once a majority of its nodes do).
    # Queues, exchanges and delayed delivery on RabbitMQ: config/celery.py.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
elif CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR / "queue"),
        "data_folder_out": str(CELERY_QUEUE_DIR / "queue"),
        "processed_folder": str(CELERY_QUEUE_DIR / "processed"),
        "control_folder": str(CELERY_QUEUE_DIR / "control"),
        "store_processed": False,
    }
    for sub in ("queue", "processed", "control"):
        (CELERY_QUEUE_DIR / sub).mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "smartmeter")
CELERY_TASK_IGNORE_RESULT = True
# A task's message is acknowledged when the task has run, and handed back to the broker when its
# worker dies under it: a killed worker's task is done again by another (tasks are idempotent).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Messages written to disk by the broker (Celery's default, said here): RabbitMQ keeps them across
# a restart. Quorum queues have no global QoS: Celery then sets the prefetch per consumer.
CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
CELERY_WORKER_DETECT_QUORUM_QUEUES = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

# --- Metrics (docs/metrics.md) -----------------------------------------------------------------
# /metrics answers a bearer METRICS_TOKEN, or addresses in METRICS_ALLOW_NETS (comma-separated
# networks); with neither set it is off (404).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_ALLOW_NETS = [
    n.strip() for n in os.environ.get("METRICS_ALLOW_NETS", "").split(",") if n.strip()
]
METRICS_CACHE_SECONDS = env_int("METRICS_CACHE_SECONDS", 10)  # figures read at scrape time
METRICS_COUNT_CAP = env_int("METRICS_COUNT_CAP", 100_000)  # rows a count reads, at most
METRICS_TIMEOUT_SECONDS = float(os.environ.get("METRICS_TIMEOUT_SECONDS", "2"))
HEALTHZ_BROKER_CACHE_SECONDS = env_int("HEALTHZ_BROKER_CACHE_SECONDS", 5)
# Every process of this host writes its counters here and a scrape adds them up. prometheus_client
# reads it from the environment when first imported, which happens after settings.
PROMETHEUS_MULTIPROC_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "metrics")
)
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("ar", "العربية"), ("en", "English"), ("hi", "हिन्दी")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Our formats (config/formats/<language>/formats.py): every date-time carries its zone.
FORMAT_MODULE_PATH = "config.formats"

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Bodies above this are refused with 413 before any view reads them.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["core.renderers.OrjsonRenderer"],
    "DEFAULT_SCHEMA_CLASS": "core.schema.ApiSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.http.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    # `format` is ours (the export endpoint), not content negotiation: we only speak JSON.
    "URL_FORMAT_OVERRIDE": None,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 60)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": secret_derived("JWT_SIGNING_KEY", "smartmeter.jwt"),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Smart-meter consumer API",
    "DESCRIPTION": (
        "Consumers sign in with their mobile number, link the consumer accounts printed on their "
        "bills, and register devices for alerts. Every 4xx answers with one error format: "
        '`{"error": {"code", "message", "fields"}}`. Text never holds the NUL character.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # core.schema.IdConverter: ids in paths, bounded to what a 64-bit column holds.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}},
}

# --- Admin sign-in ---
# Staff sign in to the admin with a password; django-axes counts the failures. After
# AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is locked out
# (429 and a page saying so) for AXES_COOLOFF_TIME, even with the right password; a success
# before the limit starts the count again. Another user, or the same one from another address,
# is not locked by it. An administrator unlocks early with `manage.py axes_reset_username NAME`.
# The consumer API signs in with one-time codes and JWTs, not passwords: axes never sees it.
AUTHENTICATION_BACKENDS = [
    # First, so that a locked-out pair is refused before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Failures during a lockout do not extend it: the wait stays what the page says.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# The caller's address as the rest of the server reads it (X-Forwarded-For only behind our proxy).
AXES_CLIENT_IP_CALLABLE = "core.http.client_ip"
AXES_COOLOFF_MESSAGE = (
    "Too many failed sign-ins for this user from this address. Try again in "
    f"{int(AXES_COOLOFF_TIME.total_seconds() // 60)} minutes, or ask an administrator "
    "to unlock it."
)

# --- Readings -------------------------------------------------------------------------------
# A head-end batch may be this large; a day of 10,000 meters as load-profile blocks is about 5 MiB.
READINGS_MAX_BODY_BYTES = env_int("READINGS_MAX_BODY_BYTES", 64 * 1024 * 1024)

# --- Payments and the head-end --------------------------------------------------------------
PAYMENT_GATEWAY = os.environ.get("PAYMENT_GATEWAY", "simulated")
# Shared secret of the simulated gateway's signed webhooks (a real gateway has its own).
PAYMENT_WEBHOOK_SECRET = secret_derived("PAYMENT_WEBHOOK_SECRET", "smartmeter.webhooks")
PAYMENT_WEBHOOK_TOLERANCE_SECONDS = env_int("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", 300)
# Where consumers' browsers and the gateway reach this server: payment pages, links sent by SMS,
# webhooks. Unset, it follows PORT (the port the web process serves): links and webhooks reach the
# server that made them. `make run` sets it for every process, since honcho gives each its own PORT.
PUBLIC_BASE_URL = (
    os.environ.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"
).rstrip("/")
# Calls to the gateway (the simulated one's status API): its API key, and how long to wait.
PAYMENT_GATEWAY_API_KEY = secret_derived("PAYMENT_GATEWAY_API_KEY", "smartmeter.gateway-api")
PAYMENT_GATEWAY_TIMEOUT_SECONDS = float(os.environ.get("PAYMENT_GATEWAY_TIMEOUT_SECONDS", "10"))
# A hosted checkout can be paid for this long; after it, a checkout the gateway never saw paid
# is expired here (and the simulated gateway's page refuses it).
PAYMENT_CHECKOUT_VALID_MINUTES = env_int("PAYMENT_CHECKOUT_VALID_MINUTES", 30)
# Reconciliation asks the gateway about a top-up still pending this long after it started, then
# again as often while it stays pending; PAYMENT_RECONCILE_BATCH top-ups to a task.
PAYMENT_RECONCILE_AFTER_MINUTES = env_int("PAYMENT_RECONCILE_AFTER_MINUTES", 5)
PAYMENT_RECONCILE_BATCH = env_int("PAYMENT_RECONCILE_BATCH", 100)
# Charging runs as this many parallel tasks a minute, each over its share of the meters.
CHARGE_SHARDS = env_int("CHARGE_SHARDS", 4)
HEADEND_BACKEND = os.environ.get("HEADEND_BACKEND", "log")  # log | http
HEADEND_URL = os.environ.get("HEADEND_URL", "")
HEADEND_TOKEN = os.environ.get("HEADEND_TOKEN", "")
HEADEND_TIMEOUT_SECONDS = float(os.environ.get("HEADEND_TIMEOUT_SECONDS", "10"))

# --- One-time codes -------------------------------------------------------------------------
OTP_LENGTH = 6
# Keys the stored hashes of one-time codes: a leaked table alone cannot be tried offline.
OTP_HASH_KEY = secret_derived("OTP_HASH_KEY", "smartmeter.one-time-codes")
OTP_TTL_SECONDS = env_int("OTP_TTL_SECONDS", 300)
OTP_MAX_ATTEMPTS = 5
OTP_RESEND_COOLDOWN_SECONDS = env_int("OTP_RESEND_COOLDOWN_SECONDS", 60)
# Codes sent within one rolling hour. Sign-in codes: per destination number and per client address.
# Link codes (texted to an account's registered mobile at someone else's request) have budgets of
# their own, per requesting user, per account and per client, so that nobody can spend the budget
# that protects a number's sign-in (docs/sign-in.md).
OTP_HOURLY_LIMIT_PER_PHONE = env_int("OTP_HOURLY_LIMIT_PER_PHONE", 5)
OTP_HOURLY_LIMIT_PER_CLIENT = env_int("OTP_HOURLY_LIMIT_PER_CLIENT", 20)
# Paying for someone else: lookups of an account by consumer id a user may make in an hour, so
# that holders' masked names cannot be mined id by id (billing.payfor).
PAY_LOOKUPS_PER_HOUR = env_int("PAY_LOOKUPS_PER_HOUR", 20)
# Sharing: invitations (each an SMS or an alert) a holder may send in an hour, and one number may
# be sent in a day, whatever was revoked meanwhile (accounts.shares).
SHARE_INVITATIONS_PER_HOLDER_HOUR = env_int("SHARE_INVITATIONS_PER_HOLDER_HOUR", 10)
SHARE_INVITATIONS_PER_NUMBER_DAY = env_int("SHARE_INVITATIONS_PER_NUMBER_DAY", 3)
LINK_HOURLY_LIMIT_PER_USER = env_int("LINK_HOURLY_LIMIT_PER_USER", 10)
LINK_HOURLY_LIMIT_PER_ACCOUNT = env_int("LINK_HOURLY_LIMIT_PER_ACCOUNT", 5)
LINK_HOURLY_LIMIT_PER_CLIENT = env_int("LINK_HOURLY_LIMIT_PER_CLIENT", 20)
# Only trust X-Forwarded-For when a proxy we run sets it.
USE_X_FORWARDED_FOR = env_bool("USE_X_FORWARDED_FOR", False)

# --- SMS ------------------------------------------------------------------------------------
SMS_BACKEND = os.environ.get("SMS_BACKEND", "console")  # console | http | locmem
SMS_HTTP_URL = os.environ.get("SMS_HTTP_URL", "")
SMS_HTTP_TOKEN = os.environ.get("SMS_HTTP_TOKEN", "")
SMS_HTTP_SENDER = os.environ.get("SMS_HTTP_SENDER", "SmartMeter")
SMS_HTTP_TIMEOUT_SECONDS = float(os.environ.get("SMS_HTTP_TIMEOUT_SECONDS", "10"))

# --- Push (FCM) -----------------------------------------------------------------------------
FIREBASE_CREDENTIALS_FILE = os.environ.get("FIREBASE_CREDENTIALS_FILE", "")
# Another FCM HTTP v1 endpoint ("…/v1/projects/{0}/messages:send"), e.g. the fake server in tests/fakes.
FCM_ENDPOINT = os.environ.get("FCM_ENDPOINT", "")
FCM_PROJECT_ID = os.environ.get("FCM_PROJECT_ID", "")
# A fixed OAuth access token instead of a service account: only for FCM_ENDPOINT stand-ins.
FCM_ACCESS_TOKEN = os.environ.get("FCM_ACCESS_TOKEN", "")
FCM_MAX_CONCURRENCY = env_int("FCM_MAX_CONCURRENCY", 32)  # requests in flight per worker process
FCM_TIMEOUT_SECONDS = env_int("FCM_TIMEOUT_SECONDS", 10)
NOTIFY_BATCH_SIZE = env_int("NOTIFY_BATCH_SIZE", 500)  # alerts per push task
NOTIFY_MAX_PUSH_ATTEMPTS = env_int("NOTIFY_MAX_PUSH_ATTEMPTS", 8)
# The sweeper re-dispatches alerts a lost task or broker outage left behind: every SWEEP seconds,
# pending alerts queued more than GRACE ago, and claims older than LEASE (their worker died).
NOTIFY_SWEEP_SECONDS = env_int("NOTIFY_SWEEP_SECONDS", 60)
NOTIFY_SWEEP_GRACE_SECONDS = env_int("NOTIFY_SWEEP_GRACE_SECONDS", 300)
NOTIFY_CLAIM_LEASE_SECONDS = env_int("NOTIFY_CLAIM_LEASE_SECONDS", 300)
# Low-balance alert level when a user has not chosen one, per currency (major units).
LOW_BALANCE_DEFAULT_AMOUNTS = {"KWD": "2.000", "EGP": "50.00", "SAR": "20.00", "INR": "100.00"}
LOW_BALANCE_DEFAULT_DAYS = env_int("LOW_BALANCE_DEFAULT_DAYS", 2)

# --- Service requests ------------------------------------------------------------------------
# Photos and documents attached to a service request: JPEG, PNG or PDF (by content), at most this size.
SERVICE_REQUEST_ATTACHMENT_MAX_BYTES = env_int(
    "SERVICE_REQUEST_ATTACHMENT_MAX_BYTES", 5 * 1024 * 1024
)

APP_NAME = os.environ.get("APP_NAME", "SmartMeter")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"client_errors_short": {"()": "core.logs.ClientErrorsWithoutTraceback"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["client_errors_short"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # firebase-admin's async client (httpx) logs every request at INFO: a line per push.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
