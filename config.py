"""Every setting of the app, read from the environment with a safe default.

`CIIE_CONFIG` chooses the class (`development`, `production`, `test`); each value below can be
overridden by an environment variable of the same name.
"""
import os
from datetime import timedelta

from flask_appbuilder.security.manager import AUTH_DB

BASE_DIR = os.path.abspath(os.path.dirname(__file__))
INSTANCE_DIR = os.environ.get("CIIE_INSTANCE_DIR", os.path.join(BASE_DIR, "instance"))


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.lower() in ("1", "true", "yes", "on")


class Config:
    APP_NAME = "CIIE"
    APP_THEME = ""
    SECRET_KEY = _env("SECRET_KEY", "dev-only-secret-change-me")

    # Database: SQLite is the embedded default; PostgreSQL in production and tests.
    SQLALCHEMY_DATABASE_URI = _env(
        "DATABASE_URL", "sqlite:///" + os.path.join(INSTANCE_DIR, "ciie.db")
    )
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    # A PostgreSQL streaming replica for list pages, API lists and exports (app/replica.py,
    # docs/production.md); empty: everything on DATABASE_URL. A replica lagging more than
    # REPLICA_MAX_LAG seconds, or unreachable, is left aside (the primary answers); its state is
    # read at most every REPLICA_CHECK_INTERVAL seconds per process.
    DATABASE_REPLICA_URL = _env("DATABASE_REPLICA_URL")
    REPLICA_MAX_LAG = float(_env("REPLICA_MAX_LAG", "10"))
    REPLICA_CHECK_INTERVAL = float(_env("REPLICA_CHECK_INTERVAL", "1"))
    REPLICA_CONNECT_TIMEOUT = int(_env("REPLICA_CONNECT_TIMEOUT", "2"))

    # Alembic owns the schema: Flask-AppBuilder must never create tables or permissions at
    # start-up; `flask ciie init` syncs permissions and roles after `flask db upgrade`.
    FAB_CREATE_DB = False
    FAB_UPDATE_PERMS = False
    FAB_SECURITY_MANAGER_CLASS = "app.security_manager.CiieSecurityManager"
    FAB_INDEX_VIEW = "app.views.home.HomeView"
    FAB_BASE_TEMPLATE = "ciie_baselayout.html"
    FAB_ADD_SECURITY_API = False
    FAB_API_SWAGGER_UI = True
    # app/api registers its own OpenAPI document (every API user reads the operations it may
    # call) and menu API (described as it answers), in place of FAB's.
    FAB_ADD_OPENAPI_VIEWS = False
    FAB_ADD_MENU_API = False
    FAB_API_MAX_PAGE_SIZE = 100

    AUTH_TYPE = AUTH_DB
    AUTH_ROLE_ADMIN = "admin"
    AUTH_ROLE_PUBLIC = "public"
    AUTH_USER_REGISTRATION = False
    AUTH_RATE_LIMITED = True
    AUTH_RATE_LIMIT = _env("AUTH_RATE_LIMIT", "10 per 1 minute")
    RATELIMIT_ENABLED = True
    FAB_PASSWORD_HASH_METHOD = "scrypt"

    # Background jobs: without REDIS_URL every job runs inline in the request.
    REDIS_URL = _env("REDIS_URL")
    RQ_QUEUE = _env("RQ_QUEUE", "ciie")
    # Batches larger than this run as background tasks (with a progress page) when Redis is on.
    BATCH_INLINE_MAX = int(_env("BATCH_INLINE_MAX", "2000"))
    TASK_TIMEOUT = int(_env("TASK_TIMEOUT", "3600"))
    # A running task writes a heartbeat this often; one silent for TASK_HEARTBEAT_TIMEOUT
    # seconds lost its worker (killed, machine gone) and is marked failed, to be run again.
    TASK_HEARTBEAT_INTERVAL = int(_env("TASK_HEARTBEAT_INTERVAL", "10"))
    TASK_HEARTBEAT_TIMEOUT = int(_env("TASK_HEARTBEAT_TIMEOUT", "60"))
    # Seconds between the retries of a failed e-mail or SMS (rq's scheduler fires them).
    NOTIFY_RETRY_INTERVALS = _env("NOTIFY_RETRY_INTERVALS", "10,60,300,900")
    # Lists count their rows up to this many (as many as a batch that runs inline); past it
    # they say "more than …": an exact count of 100,000 rows would cost every page view more
    # than the page itself (bench/README.md). Actions on all matching rows count exactly.
    LIST_COUNT_LIMIT = int(_env("LIST_COUNT_LIMIT", "2000"))
    RATELIMIT_STORAGE_URI = _env("RATELIMIT_STORAGE_URI", REDIS_URL or "memory://")
    # Redis down must not lock everyone out: the limiter counts in memory until it is back.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True

    # i18n: zh is the default; the navbar switches between the two.
    BABEL_DEFAULT_LOCALE = "zh"
    BABEL_DEFAULT_TIMEZONE = "Asia/Shanghai"
    BABEL_TRANSLATION_DIRECTORIES = os.path.join(BASE_DIR, "app", "translations")
    # Language names are endonyms: each is written in its own language on purpose.
    LANGUAGES = {
        "zh": {"flag": "cn", "name": "中文"},
        "en": {"flag": "gb", "name": "English"},
    }

    # Security basics
    WTF_CSRF_ENABLED = True
    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    PERMANENT_SESSION_LIFETIME = timedelta(hours=8)
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(hours=2)
    API_LOGIN_RATE_LIMIT = _env("API_LOGIN_RATE_LIMIT", "10 per 1 minute")
    # Failed logins of one account (web and API together): from one address, and from all
    # addresses. One address reaches at most 25 an hour (5 windows of 15 minutes), below the
    # second limit, so it can hold an account only for itself (app/web_security.py).
    LOGIN_ACCOUNT_ADDRESS_RATE_LIMIT = _env("LOGIN_ACCOUNT_ADDRESS_RATE_LIMIT",
                                            "5 per 15 minutes")
    LOGIN_ACCOUNT_RATE_LIMIT = _env("LOGIN_ACCOUNT_RATE_LIMIT", "30 per 1 hour")
    # Reverse proxies in front of the app (docs/production.md): their X-Forwarded-For, -Proto
    # and -Host are believed. 0 (development): the client talks to the app directly.
    PROXY_COUNT = int(_env("PROXY_COUNT", "0"))
    # Security headers (Flask-Talisman): HSTS only where the app is served over HTTPS.
    HSTS_ENABLED = False
    # Scripts run only from our origin with the response's nonce (FAB's templates and ours
    # carry it). Styles allow inline: FAB's widgets and select2 write style attributes.
    CONTENT_SECURITY_POLICY = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data:",
        "font-src": "'self' data:",
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }

    # Uploads live outside static/ and are served only through scoped views.
    UPLOAD_FOLDER = _env("UPLOAD_FOLDER", os.path.join(INSTANCE_DIR, "uploads"))
    IMG_UPLOAD_FOLDER = UPLOAD_FOLDER
    MAX_CONTENT_LENGTH = 20 * 1024 * 1024
    MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
    MAX_PHOTO_BYTES = 2 * 1024 * 1024
    # Persons from a spreadsheet (issue 16): the largest sheet (xlsx, xls, CSV) and the most
    # persons one file may hold; larger files are refused, naming the limit.
    PERSON_IMPORT_MAX_BYTES = int(_env("PERSON_IMPORT_MAX_BYTES", str(5 * 1024 * 1024)))
    PERSON_IMPORT_MAX_ROWS = int(_env("PERSON_IMPORT_MAX_ROWS", "5000"))
    # The badge photo check on upload (app/photo_check.py; README "Badge photos"). Pixels;
    # brightness is the mean grey level 0–255; the face ratio is the detected face's height
    # over the photo's; the background is the top and upper side strips (mean, standard
    # deviation). A photo too small, too dark, without exactly one face or with a face too
    # small is refused; a background not plain and light is a warning the reviewer sees.
    # Larger pictures are refused before their pixels are read (a phone's 24 MP fits).
    PHOTO_MAX_PIXELS = int(_env("PHOTO_MAX_PIXELS", "25000000"))
    PHOTO_MIN_WIDTH = int(_env("PHOTO_MIN_WIDTH", "100"))
    PHOTO_MIN_HEIGHT = int(_env("PHOTO_MIN_HEIGHT", "120"))
    PHOTO_MIN_LUMINANCE = float(_env("PHOTO_MIN_LUMINANCE", "60"))
    PHOTO_MIN_FACE_RATIO = float(_env("PHOTO_MIN_FACE_RATIO", "0.2"))
    PHOTO_BACKGROUND_MIN_LUMINANCE = float(_env("PHOTO_BACKGROUND_MIN_LUMINANCE", "140"))
    PHOTO_BACKGROUND_MAX_SPREAD = float(_env("PHOTO_BACKGROUND_MAX_SPREAD", "35"))

    # Mail (a real SMTP connection; tests run aiosmtpd on loopback)
    MAIL_SERVER = _env("MAIL_SERVER", "127.0.0.1")
    MAIL_PORT = int(_env("MAIL_PORT", "8025"))
    MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", False)
    MAIL_USERNAME = _env("MAIL_USERNAME")
    MAIL_PASSWORD = _env("MAIL_PASSWORD")
    MAIL_DEFAULT_SENDER = _env("MAIL_DEFAULT_SENDER", "noreply@ciie.local")
    # With no SMTP server (the embedded default) e-mails are written to the log instead.
    MAIL_BACKEND = _env("MAIL_BACKEND", "log")
    MAIL_OUTBOX = _env("MAIL_OUTBOX", os.path.join(INSTANCE_DIR, "mail-outbox.jsonl"))
    # Flask-Mail would drop mail when TESTING; the tests talk to a real SMTP server instead.
    MAIL_SUPPRESS_SEND = False
    SMS_BACKEND = _env("SMS_BACKEND", "log")
    # The SMS sandbox appends each message here as a JSON line (the provider is out of reach).
    SMS_OUTBOX = _env("SMS_OUTBOX", os.path.join(INSTANCE_DIR, "sms-outbox.jsonl"))
    # SMS providers (app/gateways/sms.py), chosen by SMS_BACKEND (log | aliyun | tencent).
    # Secrets come from the environment or a file (*_FILE) outside the repository. *_TEMPLATES
    # is JSON: {"<kind>": {"zh": "<template code>", "en": "…"}} for every kind in
    # app/gateways/sms.py SMS_TEMPLATES. *_ENDPOINT is the provider's host (http://… only for
    # the tests' loopback stub).
    SMS_TIMEOUT = _env("SMS_TIMEOUT", "10")
    ALIYUN_SMS_ACCESS_KEY_ID = _env("ALIYUN_SMS_ACCESS_KEY_ID")
    ALIYUN_SMS_ACCESS_KEY_SECRET = _env("ALIYUN_SMS_ACCESS_KEY_SECRET")
    ALIYUN_SMS_ACCESS_KEY_SECRET_FILE = _env("ALIYUN_SMS_ACCESS_KEY_SECRET_FILE")
    ALIYUN_SMS_REGION = _env("ALIYUN_SMS_REGION", "cn-hangzhou")
    ALIYUN_SMS_ENDPOINT = _env("ALIYUN_SMS_ENDPOINT", "dysmsapi.aliyuncs.com")
    ALIYUN_SMS_SIGN_NAME = _env("ALIYUN_SMS_SIGN_NAME")
    ALIYUN_SMS_TEMPLATES = _env("ALIYUN_SMS_TEMPLATES", "{}")
    TENCENT_SMS_SECRET_ID = _env("TENCENT_SMS_SECRET_ID")
    TENCENT_SMS_SECRET_KEY = _env("TENCENT_SMS_SECRET_KEY")
    TENCENT_SMS_SECRET_KEY_FILE = _env("TENCENT_SMS_SECRET_KEY_FILE")
    TENCENT_SMS_REGION = _env("TENCENT_SMS_REGION", "ap-guangzhou")
    TENCENT_SMS_ENDPOINT = _env("TENCENT_SMS_ENDPOINT", "sms.tencentcloudapi.com")
    TENCENT_SMS_SDK_APP_ID = _env("TENCENT_SMS_SDK_APP_ID")
    TENCENT_SMS_SIGN_NAME = _env("TENCENT_SMS_SIGN_NAME")
    TENCENT_SMS_TEMPLATES = _env("TENCENT_SMS_TEMPLATES", "{}")

    # Where units send bank transfers (shown on the order page; the seller on invoices).
    PAYEE_NAME = _env("PAYEE_NAME", "中国国际进口博览局")
    PAYEE_BANK = _env("PAYEE_BANK", "中国银行上海市分行")
    PAYEE_ACCOUNT = _env("PAYEE_ACCOUNT", "4500 0000 0000 0000 001")
    # Online payments (app/gateways/payments/). With PAYMENT_SANDBOX on, the sandbox (app/sandbox/)
    # plays every provider with keys it generates under PAYMENT_SANDBOX_DIR (gitignored) and
    # the provider settings below are not read.
    PAYMENT_SANDBOX = _env_bool("PAYMENT_SANDBOX", True)
    PAYMENT_SANDBOX_DIR = _env("PAYMENT_SANDBOX_DIR", os.path.join(INSTANCE_DIR, "payment-sandbox"))
    # The app's public base URL for providers' notifications (https://…); default: the host of
    # the request that opened the payment.
    PAYMENT_NOTIFY_BASE_URL = _env("PAYMENT_NOTIFY_BASE_URL")
    PAYMENT_TIMEOUT = float(_env("PAYMENT_TIMEOUT", "15"))
    # Keys are PEM files (*_FILE), never values in the environment or the repository.
    ALIPAY_APP_ID = _env("ALIPAY_APP_ID")
    ALIPAY_APP_PRIVATE_KEY_FILE = _env("ALIPAY_APP_PRIVATE_KEY_FILE")
    ALIPAY_PUBLIC_KEY_FILE = _env("ALIPAY_PUBLIC_KEY_FILE")
    WECHATPAY_MCHID = _env("WECHATPAY_MCHID")
    WECHATPAY_APPID = _env("WECHATPAY_APPID")
    WECHATPAY_CERT_SERIAL_NO = _env("WECHATPAY_CERT_SERIAL_NO")
    WECHATPAY_PRIVATE_KEY_FILE = _env("WECHATPAY_PRIVATE_KEY_FILE")
    WECHATPAY_APIV3_KEY = _env("WECHATPAY_APIV3_KEY")
    # Public-key mode: WeChat Pay's platform public key and its id (PUB_KEY_ID_…).
    WECHATPAY_PUBLIC_KEY_FILE = _env("WECHATPAY_PUBLIC_KEY_FILE")
    WECHATPAY_PUBLIC_KEY_ID = _env("WECHATPAY_PUBLIC_KEY_ID")
    # UnionPay ACP 5.1.0 (QR code product; app/gateways/payments/acp.py): our merchant number,
    # the gateway (https://gateway.95516.com; UnionPay's test: https://gateway.test.95516.com),
    # our signing certificate with its key (CFCA's .pfx, or PEM key + certificate) and its
    # password, and UnionPay's middle and root certificates that its signing certificate
    # (signPubKeyCert, in every answer and notification) must chain to.
    UNIONPAY_MER_ID = _env("UNIONPAY_MER_ID")
    UNIONPAY_API_URL = _env("UNIONPAY_API_URL")
    UNIONPAY_SIGN_CERT_FILE = _env("UNIONPAY_SIGN_CERT_FILE")
    UNIONPAY_SIGN_CERT_PASSWORD = _env("UNIONPAY_SIGN_CERT_PASSWORD")
    UNIONPAY_MIDDLE_CERT_FILE = _env("UNIONPAY_MIDDLE_CERT_FILE")
    UNIONPAY_ROOT_CERT_FILE = _env("UNIONPAY_ROOT_CERT_FILE")
    # The B2B gateway: UnionPay's B2B product (bizType 000202), the same protocol; its merchant
    # number and certificate may be the QR product's. The browser posts to B2B_API_URL.
    B2B_MER_ID = _env("B2B_MER_ID")
    B2B_API_URL = _env("B2B_API_URL")
    B2B_SIGN_CERT_FILE = _env("B2B_SIGN_CERT_FILE")
    B2B_SIGN_CERT_PASSWORD = _env("B2B_SIGN_CERT_PASSWORD")
    B2B_MIDDLE_CERT_FILE = _env("B2B_MIDDLE_CERT_FILE")
    B2B_ROOT_CERT_FILE = _env("B2B_ROOT_CERT_FILE")

    # VAT invoices: the seller printed on every e-invoice (the organiser's legal data, not UI
    # text), the VAT rate of the badge fee (a Decimal string) and the CJK font the PDF embeds.
    INVOICE_SELLER_NAME = _env("INVOICE_SELLER_NAME", "中国国际进口博览局（演示）")
    INVOICE_SELLER_TAX_ID = _env("INVOICE_SELLER_TAX_ID", "12100000MB0P17651L")
    INVOICE_SELLER_ADDRESS_PHONE = _env("INVOICE_SELLER_ADDRESS_PHONE",
                                        "上海市青浦区崧泽大道333号 021-00000000")
    INVOICE_SELLER_BANK_ACCOUNT = _env("INVOICE_SELLER_BANK_ACCOUNT",
                                       "中国银行上海市分行 000000000000")
    INVOICE_TAX_RATE = _env("INVOICE_TAX_RATE", "0.06")
    # E-invoices are issued by an invoicing platform (app/gateways/einvoice/, docs/production.md):
    # nuonuo (Nuonuo's open platform) or sandbox (development: specimens drawn here, marked
    # 样票 / SPECIMEN). Secrets come from the environment or a file (*_FILE) outside the
    # repository. NUONUO_FILE_HOSTS: the hosts (comma-separated) the issued PDF/OFD/XML may be
    # downloaded from. NUONUO_CLERK: the drawer (开票员) registered with the tax bureau.
    EINVOICE_PLATFORM = _env("EINVOICE_PLATFORM", "sandbox")
    NUONUO_URL = _env("NUONUO_URL", "https://sdk.nuonuo.com/open/v1/services")
    NUONUO_APP_KEY = _env("NUONUO_APP_KEY")
    NUONUO_APP_SECRET = _env("NUONUO_APP_SECRET")
    NUONUO_APP_SECRET_FILE = _env("NUONUO_APP_SECRET_FILE")
    NUONUO_ACCESS_TOKEN = _env("NUONUO_ACCESS_TOKEN")
    NUONUO_ACCESS_TOKEN_FILE = _env("NUONUO_ACCESS_TOKEN_FILE")
    # The authorised merchant's taxpayer id: only for a third-party (ISV) application.
    NUONUO_USER_TAX = _env("NUONUO_USER_TAX")
    NUONUO_CLERK = _env("NUONUO_CLERK")
    NUONUO_EXTENSION_NUMBER = _env("NUONUO_EXTENSION_NUMBER")
    # pc: 数电普票 (electronic ordinary invoice); the tax classification code of the badge fee.
    NUONUO_INVOICE_LINE = _env("NUONUO_INVOICE_LINE", "pc")
    NUONUO_GOODS_CODE = _env("NUONUO_GOODS_CODE")
    NUONUO_FILE_HOSTS = _env("NUONUO_FILE_HOSTS")
    NUONUO_TIMEOUT = _env("NUONUO_TIMEOUT", "30")
    # PDFs embed a CJK TrueType font (app/documents/fonts.py): Debian's WenQuanYi by default.
    CJK_FONT_PATH = _env("CJK_FONT_PATH")
    CJK_FONT_INDEX = int(_env("CJK_FONT_INDEX", "0"))
    # Badge QR codes are signed with Ed25519 (app/badge_tokens.py). The private keys live in
    # this folder, outside the repository; development and tests make one on first start,
    # production refuses to start without one (`flask ciie badge-keys generate`).
    BADGE_SIGNING_KEYS_DIR = _env("BADGE_SIGNING_KEYS_DIR", os.path.join(INSTANCE_DIR,
                                                                          "badge-keys"))
    BADGE_SIGNING_KEY_REQUIRED = False
    # ID and mobile numbers are sealed at rest (app/pii.py: AES-256-GCM) and searched by a
    # keyed hash (HMAC-SHA256). PII_KEYS: "kid:base64-of-32-bytes" entries (commas or new
    # lines), PII_KEY_ID the one that seals (the last when unset); PII_SEARCH_KEY: base64 of
    # 32 bytes or more. Each may be a file (*_FILE) outside the repository. Development and
    # tests use fixed development keys (app/pii.py); production refuses to start without them
    # (`python -m app.pii` makes keys, `flask ciie rotate-keys`, docs/production.md).
    PII_KEYS = _env("PII_KEYS")
    PII_KEYS_FILE = _env("PII_KEYS_FILE")
    PII_KEY_ID = _env("PII_KEY_ID")
    PII_SEARCH_KEY = _env("PII_SEARCH_KEY")
    PII_SEARCH_KEY_FILE = _env("PII_SEARCH_KEY_FILE")
    PII_KEYS_REQUIRED = False


class DevelopmentConfig(Config):
    DEBUG = False


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    REMEMBER_COOKIE_HTTPONLY = True
    PREFERRED_URL_SCHEME = "https"
    HSTS_ENABLED = True
    # Real providers only: the sandbox and its pages do not exist in production.
    PAYMENT_SANDBOX = False
    # create_app refuses to start with a sandbox provider or a provider's setting missing,
    # naming each (app/providers.py: SMS, e-mail, online payments).
    PROVIDERS_REQUIRED = True
    # ... and without a badge signing key.
    BADGE_SIGNING_KEY_REQUIRED = True
    # ... and without the keys that seal personal data.
    PII_KEYS_REQUIRED = True
    # Units download only the files the invoicing platform issued, never a PDF drawn here.
    EINVOICE_PLATFORM_FILES_ONLY = True


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret-key-of-thirty-two-bytes!"
    # Cheap hashing keeps the suite fast; production keeps scrypt.
    FAB_PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
    # Tests that exercise the limiter switch it on themselves.
    AUTH_RATE_LIMIT = "1000 per 1 minute"
    API_LOGIN_RATE_LIMIT = "1000 per 1 minute"
    LOGIN_ACCOUNT_ADDRESS_RATE_LIMIT = "1000 per 1 minute"
    LOGIN_ACCOUNT_RATE_LIMIT = "1000 per 1 minute"
    MAIL_BACKEND = _env("MAIL_BACKEND", "smtp")


CONFIGS = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "test": TestConfig,
}


def get_config(name: str | None = None) -> type[Config]:
    return CONFIGS[name or os.environ.get("CIIE_CONFIG", "development")]


# --------------------------------------------------------------------------------------------
# Roles, least privilege. `flask ciie init` creates them in the database from this table and
# adds missing permissions; admins can then edit roles and permissions in the UI (Security).
# Each entry: (view-or-menu name regex, permission regex).
# --------------------------------------------------------------------------------------------
_SELF_SERVICE = [
    (r"^CiieUserDBModelView$", r"^(can_userinfo|resetmypassword|userinfoedit)$"),
    (r"^(ResetMyPasswordView|UserInfoEditView)$", r"^can_this_form_(get|post)$"),
    (r"^Tasks$", r"^can_show$"),
]
_READ_API = r"^can_(get|get_list|info)$"

CIIE_ROLES = {
    "unit": _SELF_SERVICE + [
        (r"^UnitPersons$", r"^(can_(list|show|add|edit|delete)|submit_persons|accept_joins|"
                           r"refuse_joins|order_badges|cancel_persons)$"),
        (r"^UnitOrderPage$", r"^can_(show|cancel|pay)$"),
        (r"^UnitRefunds$", r"^can_(list|show|request)$"),
        (r"^UnitDocuments$", r"^can_(list|show|add|delete|download)$"),
        (r"^UnitAddresses$", r"^(can_(list|show|add|edit|delete)|set_default)$"),
        (r"^UnitOrders$", r"^can_(list|show)$"),
        (r"^UnitPayments$", r"^can_(show|pay)$"),
        (r"^UnitInvoices$", r"^(can_(list|show|download|request|logistics)|request_void|"
                            r"withdraw_requests)$"),
        (r"^UnitInfo$", r"^can_edit$"),
        (r"^UnitPreview$", r"^can_(show|submit)$"),
        (r"^UnitCarryForward$", r"^can_carry_forward$"),
        (r"^UnitPersonImport$", r"^can_(import|template)$"),
        (r"^PersonFiles$", r"^can_photo$"),
        (r"^UnitEvents$", r"^can_(list|show|apply)$"),
        (r"^UnitApplications$", r"^(can_(list|show)|withdraw_applications)$"),
        (r"^UnitBadges$", r"^can_(list|show)$"),
        (r"^(PersonRegistrationApi|UnitRegistrationApi|OrderApi|InvoiceApi|RefundApi)$",
         _READ_API),
        (r"^InvoiceApi$", r"^can_download$"),
        (r"^(Registration|Unit information|Unit persons|Import persons|Earlier persons|"
         r"Unit documents|"
         r"Addresses|Preview and submit|Unit orders|Unit refunds|Unit invoices|Unit events|"
         r"Unit applications|Unit badges)$",
         r"^menu_access$"),
    ],
    "person": _SELF_SERVICE + [
        (r"^(PersonRegistrationApi|UnitRegistrationApi)$", _READ_API),
        (r"^AppPersonApi$", r"^can_(join|get_me|put_me|put_photo)$"),
    ],
    "delegation": _SELF_SERVICE + [
        (r"^DelegationUnits$", r"^(can_(list|show|export)|approve_units|return_units|"
                               r"reject_units)$"),
        (r"^DelegationPersons$", r"^(can_(list|show|reveal|export)|tag_(visitor|staff|vip)|"
                                 r"lock_persons)$"),
        (r"^DelegationDocuments$", r"^can_(list|show|download)$"),
        (r"^DelegationStats$", r"^can_list$"),
        (r"^PersonFiles$", r"^can_photo$"),
        (r"^(PersonRegistrationApi|UnitRegistrationApi)$", _READ_API),
        (r"^DelegationClaims$", r"^(can_(list|show)|approve_claims|reject_claims)$"),
        (r"^(Delegation|Delegation units|Delegation persons|Delegation statistics|"
         r"Delegation claims)$", r"^menu_access$"),
    ],
    "finance": _SELF_SERVICE + [
        (r"^FinanceOrders$", r"^can_(list|show)$"),
        (r"^(OrderApi|InvoiceApi|RefundApi)$", r"^can_(get|get_list|info|download)$"),
        (r"^FinancePayments$", r"^can_(list|show|export)$"),
        (r"^FinanceTransfers$", r"^(can_(list|show|voucher|export)|confirm_transfers|"
                                r"reject_transfers)$"),
        (r"^BankStatements$", r"^can_(list|show|import|match|report|export)$"),
        (r"^BankStatementImports$", r"^can_list$"),
        (r"^FinanceRefunds$", r"^(can_(list|show|export)|approve_refunds|execute_refunds|"
                              r"complete_refunds|reject_refunds)$"),
        (r"^Reconciliation$", r"^can_show$"),
        # Money paid twice, refunded by finance (issue 12).
        (r"^FinanceOverpayments$", r"^(can_(list|show)|refund_online|refund_by_transfer)$"),
        (r"^Overpayments$", r"^menu_access$"),
        (r"^FinanceNotifications$", r"^(can_(list|show)|resend_notifications)$"),
        (r"^FinanceInvoices$", r"^(can_(list|show|download|issue|mail|export|batch)|"
                               r"issue_paper|mail_paper|"
                               r"reject_invoices|confirm_returned|regenerate_e_invoices)$"),
        (r"^(Finance|Finance orders|Payments|Bank transfers|Bank statements|Finance refunds|"
         r"Finance invoices|Reconciliation|Failed notifications|Statement imports)$",
         r"^menu_access$"),
    ],
    "reviewer": _SELF_SERVICE + [
        (r"^ReviewQueue$", r"^(can_(list|show)|pass_review|fail_review_\w+)$"),
        (r"^PersonFiles$", r"^can_photo$"),
        (r"^PersonRegistrationApi$", _READ_API),
        (r"^(Security review|Review queue)$", r"^menu_access$"),
    ],
    "organiser": _SELF_SERVICE + [
        (r"^OrganiserEvents$", r"^(can_(list|show|add|edit|delete)|publish_events|"
                               r"close_events)$"),
        (r"^OrganiserApplications$", r"^(can_(list|show)|accept_applications|"
                                     r"decline_applications)$"),
        (r"^(Events|Organiser events|Applications)$", r"^menu_access$"),
    ],
    # Gate staff: the scan page and the scan API, nothing else (no list of persons or badges).
    "gate": _SELF_SERVICE + [
        (r"^GateCheck$", r"^can_scan$"),
        (r"^GateApi$", r"^can_scan$"),
        (r"^(Gate|Gate scan)$", r"^menu_access$"),
    ],
}
# A sub-delegation user does what a delegation user does, within its sub-delegation.
CIIE_ROLES["sub_delegation"] = CIIE_ROLES["delegation"]
Config.CIIE_ROLES = CIIE_ROLES
