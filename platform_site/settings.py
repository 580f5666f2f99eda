"""Settings from the environment, with a working default for every variable (the embedded default)."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _dev_secret_key() -> str:
    """A per-checkout random key kept under var/, so sessions survive restarts without configuring anything."""
    path = VAR_DIR / "keys" / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


# Off unless asked for (`make dev`): a stray server never shows tracebacks or the URL list, and errors get the
# site's own pages. Static files come from whitenoise either way.
DEBUG = env_bool("DEBUG", False)
# The demo data has a published password and a superuser: the embedded default may seed it, production may not.
DEMO_SEED_ALLOWED = env_bool("DEMO_SEED_ALLOWED", True)
SECRET_KEY = os.environ.get("SECRET_KEY") or _dev_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_results",
    "django_celery_beat",
    "axes",
    "platform_site.accounts",
    "platform_site.jobs",
    "platform_site.home",
    "ledger",
    "marketplace",
    "models_market",
    "dao",
    "federation",
    "finance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: it turns a lockout into the lockout page
]

ROOT_URLCONF = "platform_site.urls"
WSGI_APPLICATION = "platform_site.wsgi.application"
ASGI_APPLICATION = "platform_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# Database: SQLite under var/ unless DATABASE_URL names another (PostgreSQL in production and CI).
DATABASE_URL = os.environ.get("DATABASE_URL", "")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL or f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (VAR_DIR).mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web server read while a worker writes; IMMEDIATE takes the write lock at BEGIN,
        # so two writers queue instead of failing with "database is locked" half way through.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not :memory:, so that a Celery worker started by the tests sees the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    # Under ASGI each request may run on a thread of its own, and a persistent connection per thread piles
    # up until PostgreSQL refuses clients; so every process draws from one bounded pool instead (Django's
    # psycopg pool), and returns the connection after each request. DB_POOL_MAX=0 turns the pool off (for
    # an external pooler such as PgBouncer); connections are then closed after each request.
    DB_POOL_MAX = int(os.environ.get("DB_POOL_MAX", "10"))
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool refuses persistent connections
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DB_POOL_MAX > 0:
        DATABASES["default"]["OPTIONS"] = {
            **DATABASES["default"].get("OPTIONS", {}),
            "pool": {
                "min_size": min(int(os.environ.get("DB_POOL_MIN", "1")), DB_POOL_MAX),
                "max_size": DB_POOL_MAX,
                # A request that waits longer than this for a connection fails instead of queueing forever.
                "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "20")),
                # Idle connections above min_size are closed after this many seconds.
                "max_idle": float(os.environ.get("DB_POOL_MAX_IDLE", "120")),
            },
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home:dashboard"
LOGOUT_REDIRECT_URL = "home:dashboard"

# Failed log-ins (the log-in page and the admin's; the API takes tokens, never passwords) are counted by
# django-axes, in the database so that every web process sees them. After AXES_FAILURE_LIMIT failures for one
# username (from anywhere) or from one address (for any username), further attempts are refused, even with the
# right password, until the cool-off has passed since the last failure. The address is REMOTE_ADDR: behind a
# proxy, uvicorn's --proxy-headers/--forwarded-allow-ips must set it from X-Forwarded-For.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_COOLOFF_MINUTES", 15)))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "platform_site.accounts.views.login_locked_out"
AXES_ENABLE_ACCESS_FAILURE_LOG = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request when it is missing
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Uploads: anything larger than this is refused before it reaches a view.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024))
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
UPLOAD_MAX_BYTES = int(os.environ.get("UPLOAD_MAX_BYTES", 2 * 1024**3))

# Redis, when given, carries the Celery broker, the result store, the cache and the Channels layer.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "platform_site.cache.RedisCache", "LOCATION": REDIS_URL}}
    # channels_redis waits on Redis in blocking reads of RedisChannelLayer.brpop_timeout (5 s), and redis-py's
    # default socket timeout is also 5 s, so every idle websocket died with a TimeoutError; the socket must
    # outwait the blocking read. Keepalive finds dead peers that the longer timeout no longer does.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": float(os.environ.get("CHANNEL_LAYER_SOCKET_TIMEOUT", "30")),
                        "socket_connect_timeout": 5,
                        "socket_keepalive": True,
                        "health_check_interval": 30,
                    }
                ]
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Without a shared channel layer the job websocket reads the job row itself (see jobs/consumers.py).
REALTIME_POLL = not REDIS_URL
REALTIME_POLL_SECONDS = float(os.environ.get("REALTIME_POLL_SECONDS", "0.5"))

# Celery: Redis in production, kombu's filesystem transport under var/queue/ in the embedded default.
QUEUE_DIR = VAR_DIR / "queue"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # A task not acknowledged within this time (its worker died) is delivered again.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3900))
    }
else:
    (QUEUE_DIR / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_RESULT_BACKEND = "django-db"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(QUEUE_DIR),
        "data_folder_out": str(QUEUE_DIR),
        # Exchange tables; the default is relative to the working directory, which differs between processes.
        "control_folder": str(QUEUE_DIR / "control"),
        "store_processed": False,
        # How often an idle worker lists the folder; the default (1 s) adds up to a second to every job.
        "polling_interval": 0.2,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", 3600))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_RESULT_EXTENDED = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The platform's Ed25519 ledger signing key; created (mode 0600) on first use when absent.
LEDGER_KEY_FILE = Path(os.environ.get("LEDGER_KEY_FILE", VAR_DIR / "keys" / "ledger_ed25519.pem"))
LEDGER_ORIGIN = os.environ.get("LEDGER_ORIGIN", "platform.example/ledger")
# A signed checkpoint every N entries (queued on the append that reaches it) and every T seconds (beat).
LEDGER_CHECKPOINT_EVERY = int(os.environ.get("LEDGER_CHECKPOINT_EVERY", 1000))
LEDGER_CHECKPOINT_SECONDS = float(os.environ.get("LEDGER_CHECKPOINT_SECONDS", 300))
# Minor units (1 token = 100) the demo faucet mints per user per day; 0 closes it.
LEDGER_FAUCET_AMOUNT = int(os.environ.get("LEDGER_FAUCET_AMOUNT", 100_000))

CELERY_BEAT_SCHEDULE = {
    "jobs-sweep-stale": {"task": "jobs.sweep_stale", "schedule": 60.0, "options": {"queue": "default"}},
    "ledger-checkpoint": {
        "task": "ledger.checkpoint",
        "schedule": LEDGER_CHECKPOINT_SECONDS,
        "options": {"queue": "default"},
    },
    "ledger-escrow-deadlines": {
        "task": "ledger.refund_expired_escrows",
        "schedule": 60.0,
        "options": {"queue": "default"},
    },
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Jobs: a running job whose worker has been silent for WORKER_ONLINE_SECONDS is requeued by the beat sweep,
# or failed once it has had JOB_MAX_ATTEMPTS.
JOB_MAX_ATTEMPTS = int(os.environ.get("JOB_MAX_ATTEMPTS", 2))
# Jobs one user may have queued or running at once (0: no limit); more are refused with a 429. Staff too.
JOB_MAX_ACTIVE_PER_USER = int(os.environ.get("JOB_MAX_ACTIVE_PER_USER", 4))
WORKER_HEARTBEAT_SECONDS = float(os.environ.get("WORKER_HEARTBEAT_SECONDS", 5))
WORKER_ONLINE_SECONDS = float(os.environ.get("WORKER_ONLINE_SECONDS", 30))

# Marketplace: the platform's fee on every sale, in basis points (250 = 2.5%), paid to the treasury.
MARKETPLACE_FEE_BP = int(os.environ.get("MARKETPLACE_FEE_BP", 250))

# Tokenized models. The platform's fee on every token sale, licence and call, in basis points, to the treasury.
MODELS_FEE_BP = int(os.environ.get("MODELS_FEE_BP", MARKETPLACE_FEE_BP))
# The most of a payment (after the fee) that flows up a model's lineage, to its parents' and training data's
# owners, whatever its versions declare; and how many generations up it flows.
MODELS_LINEAGE_CAP_BP = int(os.environ.get("MODELS_LINEAGE_CAP_BP", 3000))
MODELS_LINEAGE_DEPTH = int(os.environ.get("MODELS_LINEAGE_DEPTH", 8))
# Metered calls: false turns metering off (licences are still checked; no reservation, no receipt).
MODELS_METERING = env_bool("MODELS_METERING", True)
# The least a call deposit is topped up by from its owner's balance (minor units), so that a run of calls
# writes one ledger entry per chunk, not one per call.
MODELS_DEPOSIT_CHUNK = int(os.environ.get("MODELS_DEPOSIT_CHUNK", 1_000))
# A top-up is also as large as what the caller's unsettled calls hold, up to this: a busy caller's deposit grows
# to hold about one settlement's calls, instead of being topped up every chunk.
MODELS_DEPOSIT_CHUNK_MAX = int(os.environ.get("MODELS_DEPOSIT_CHUNK_MAX", 10_000))
# Metered calls' statement commits without waiting for its WAL flush (synchronous_commit off for that one
# transaction, PostgreSQL): see README "Metered calls and crashes". Ledger entries always wait for theirs.
MODELS_CALLS_ASYNC_COMMIT = env_bool("MODELS_CALLS_ASYNC_COMMIT", True)
# Calls are settled to the ledger by the worker every T seconds (beat), and as soon as N are unsettled.
MODELS_SETTLE_SECONDS = float(os.environ.get("MODELS_SETTLE_SECONDS", 30))
MODELS_SETTLE_BATCH = int(os.environ.get("MODELS_SETTLE_BATCH", 500))
CELERY_BEAT_SCHEDULE["models-settle-calls"] = {
    "task": "models_market.settle_calls",
    "schedule": MODELS_SETTLE_SECONDS,
    "options": {"queue": "default"},
}
# Loaded models kept per process (least recently used first out), by artifact size: 256 MiB by default.
# Predict calls by API token answered ahead of Django's middleware and DRF, on this many threads of their own
# (each holds a connection of the pool, at most DB_POOL_MAX - 2); PostgreSQL only. See models_market/fastpath.py.
MODELS_FAST_PREDICT = env_bool("MODELS_FAST_PREDICT", True)
MODELS_PREDICT_THREADS = int(os.environ.get("MODELS_PREDICT_THREADS", 8))
MODELS_CACHE_BYTES = int(os.environ.get("MODELS_CACHE_BYTES", 256 * 1024 * 1024))

# ML: "cuda" or "cpu" forces a device; empty picks CUDA when available.
ML_DEVICE = os.environ.get("ML_DEVICE", "")
# Threads for PyTorch and BLAS in each Celery worker process; 0 shares the cores among the worker's
# processes (cores // concurrency), so that two jobs at once do not oversubscribe the CPU.
ML_THREADS = int(os.environ.get("ML_THREADS", "0"))

# Models in (models_market): the most a creator's royalty on every resale of a model's token may be, in basis
# points (2500 = 25%); the share of every per-call payment that flows up a model's lineage (its training data
# and parent models) unless its maker sets another; the largest model file an upload may be.
MODELS_ROYALTY_MAX_BP = int(os.environ.get("MODELS_ROYALTY_MAX_BP", 2500))
MODELS_LINEAGE_BP = int(os.environ.get("MODELS_LINEAGE_BP", 1000))
MODELS_UPLOAD_MAX_BYTES = int(os.environ.get("MODELS_UPLOAD_MAX_BYTES", 200 * 1024**2))


# Usernames the API's per-user rate limit does not apply to (a monitoring probe; the schema fuzzing test).
THROTTLE_EXEMPT_USERS = env_list("THROTTLE_EXEMPT_USERS", "")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "platform_site.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "platform_site.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "platform_site.throttling.AnonRateThrottle",
        "platform_site.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("THROTTLE_ANON", "60/minute"),
        "user": os.environ.get("THROTTLE_USER", "1200/minute"),
        # Each user's calls to POST /api/models/versions/<id>/predict/.
        "models_predict": os.environ.get("THROTTLE_MODELS_PREDICT", "6000/minute"),
    },
    "DEFAULT_SCHEMA_CLASS": "platform_site.api.AutoSchema",
    "EXCEPTION_HANDLER": "platform_site.api.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Platform API",
    "DESCRIPTION": "Datasets, tokenized models, DAOs, federated learning and finance models on one ledger.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # A listing's status appears in both its list and detail components, a job's in the job and analysis
    # components: one name for each.
    "ENUM_NAME_OVERRIDES": {
        "DatasetStatusEnum": "marketplace.models.Dataset.Status",
        "JobStatusEnum": "platform_site.jobs.models.Job.Status",
        "ModelVersionStatusEnum": "models_market.models.ModelVersion.Status",
        "ModelTaskEnum": "models_market.models.ModelAsset.Task",
        "ModelFormatEnum": "models_market.models.ModelVersion.Format",
        "DataFormatEnum": ["csv", "jsonl"],  # uploads and holdouts
        "FederationStatusEnum": "federation.models.Federation.Status",
        "FederationPartyStatusEnum": "federation.models.Party.Status",
        "FederationRoundStatusEnum": "federation.models.Round.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}, "axes.apps": {"level": "WARNING"}},
}

# Guaranteed licences and paid evaluations (models_market): how long a guaranteed licence's price may stay in
# escrow before the ledger's beat task refunds it; the largest sealed holdout (bytes, rows); the evaluation fee
# to the treasury (minor units) and the most models one evaluation may score; bootstrap resamples per interval.
MODELS_GUARANTEE_DEADLINE_HOURS = float(os.environ.get("MODELS_GUARANTEE_DEADLINE_HOURS", 24))
MODELS_HOLDOUT_MAX_BYTES = int(os.environ.get("MODELS_HOLDOUT_MAX_BYTES", 10 * 1024**2))
MODELS_HOLDOUT_MAX_ROWS = int(os.environ.get("MODELS_HOLDOUT_MAX_ROWS", 100_000))
MODELS_EVALUATION_FEE = int(os.environ.get("MODELS_EVALUATION_FEE", 500))
MODELS_EVALUATION_MAX_MODELS = int(os.environ.get("MODELS_EVALUATION_MAX_MODELS", 10))
MODELS_EVALUATION_RESAMPLES = int(os.environ.get("MODELS_EVALUATION_RESAMPLES", 1000))
CELERY_BEAT_SCHEDULE["models-expire-guarantees"] = {
    "task": "models_market.expire_guarantees",
    "schedule": 60.0,
    "options": {"queue": "default"},
}

# Federated learning (federation): the platform's fee on a reward pool; per-user limits (active federations a
# user coordinates, pending join requests, refused updates ledgered an hour); the largest validation file
# (bytes, rows) and update file; how often the beat task looks for rounds past their deadline, and how many
# times a round short of parties is extended before the federation fails.
FEDERATION_FEE_BP = int(os.environ.get("FEDERATION_FEE_BP", MARKETPLACE_FEE_BP))
FEDERATION_MAX_ACTIVE_PER_USER = int(os.environ.get("FEDERATION_MAX_ACTIVE_PER_USER", 10))
FEDERATION_MAX_PENDING_JOINS = int(os.environ.get("FEDERATION_MAX_PENDING_JOINS", 20))
FEDERATION_MAX_REJECTIONS_PER_HOUR = int(os.environ.get("FEDERATION_MAX_REJECTIONS_PER_HOUR", 60))
FEDERATION_VALIDATION_MAX_BYTES = int(os.environ.get("FEDERATION_VALIDATION_MAX_BYTES", 10 * 1024**2))
FEDERATION_VALIDATION_MAX_ROWS = int(os.environ.get("FEDERATION_VALIDATION_MAX_ROWS", 100_000))
FEDERATION_UPDATE_MAX_BYTES = int(os.environ.get("FEDERATION_UPDATE_MAX_BYTES", 200 * 1024**2))
# A party's look brings the open round's weights along when they are at most this size (else it downloads them).
FEDERATION_STATE_WEIGHTS_MAX_BYTES = int(os.environ.get("FEDERATION_STATE_WEIGHTS_MAX_BYTES", 4 * 1024**2))
FEDERATION_ROUND_EXTENSIONS = int(os.environ.get("FEDERATION_ROUND_EXTENSIONS", 2))
FEDERATION_DEADLINE_CHECK_SECONDS = float(os.environ.get("FEDERATION_DEADLINE_CHECK_SECONDS", 30))
CELERY_BEAT_SCHEDULE["federation-rounds-due"] = {
    "task": "federation.rounds_due",
    "schedule": FEDERATION_DEADLINE_CHECK_SECONDS,
    "options": {"queue": "default"},
}
