"""Settings with which a production app starts in the tests: Alibaba Cloud SMS (it sends nothing
here), the tests' mail server, every online payment provider with key and certificate files made
for the test in a folder outside the repository, and Nuonuo's invoicing platform (no provider is
reached)."""
from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.sms_stub import provider_settings


def key_files(folder: Path, name: str) -> tuple[str, str]:
    """(private, public) PEM files of a new RSA key pair in `folder`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = folder / f"{name}-private.pem", folder / f"{name}-public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(private), str(public)


def _certificate(subject: str, key: rsa.RSAPrivateKey, issuer: tuple | None = None,
                 ca: bool = True) -> x509.Certificate:
    """A certificate of `key` for `subject`, signed by `issuer` (name, key) or by itself."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    start = datetime.now(timezone.utc) - timedelta(days=1)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def certificate_files(folder: Path, name: str) -> tuple[str, str, str]:
    """(signing key and certificate, middle certificate, root certificate) PEM files: a chain
    of certificates made for the test, as UnionPay's ACP settings name them."""
    pem = serialization.Encoding.PEM
    root_key, middle_key, key = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                                 for _ in range(3))
    root = _certificate("Test root", root_key)
    middle = _certificate("Test middle", middle_key, (root.subject, root_key))
    signing = _certificate("Test merchant", key, (middle.subject, middle_key), ca=False)
    paths = [folder / f"{name}-{part}.pem" for part in ("sign", "middle", "root")]
    paths[0].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
                         + signing.public_bytes(pem))
    paths[1].write_bytes(middle.public_bytes(pem))
    paths[2].write_bytes(root.public_bytes(pem))
    return str(paths[0]), str(paths[1]), str(paths[2])


def payment_settings(folder: Path) -> dict[str, str]:
    """What each online payment adapter reads, key and certificate files included."""
    files = {name: key_files(folder, name) for name in ("alipay", "wechat")}
    chains = {name: certificate_files(folder, name) for name in ("UNIONPAY", "B2B")}
    return {
        "ALIPAY_APP_ID": "2021000000000001",
        "ALIPAY_APP_PRIVATE_KEY_FILE": files["alipay"][0],
        "ALIPAY_PUBLIC_KEY_FILE": files["alipay"][1],
        "WECHATPAY_MCHID": "1900000001", "WECHATPAY_APPID": "wx0000000000000001",
        "WECHATPAY_CERT_SERIAL_NO": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        "WECHATPAY_PRIVATE_KEY_FILE": files["wechat"][0],
        "WECHATPAY_APIV3_KEY": "0123456789abcdef0123456789abcdef",
        "WECHATPAY_PUBLIC_KEY_FILE": files["wechat"][1],
        "WECHATPAY_PUBLIC_KEY_ID": "PUB_KEY_ID_0000000000000000000000000001",
        "UNIONPAY_MER_ID": "777290058110048", "B2B_MER_ID": "777290058110049",
        "UNIONPAY_API_URL": "https://gateway.95516.com",
        "B2B_API_URL": "https://gateway.95516.com",
        "PAYMENT_NOTIFY_BASE_URL": "https://ciie.example",
        **{f"{prefix}_{part}_CERT_FILE": path for prefix, chain in chains.items()
           for part, path in zip(("SIGN", "MIDDLE", "ROOT"), chain, strict=True)},
    }


def production_settings(folder: Path) -> dict[str, str]:
    """Every provider setting a production start needs (add the database and the mail
    server's port), with the keys that seal personal data."""
    return {"SECRET_KEY": "a-production-secret-of-32-bytes!!", "MAIL_BACKEND": "smtp",
            **provider_settings("aliyun"), **payment_settings(folder),
            "EINVOICE_PLATFORM": "nuonuo", "NUONUO_APP_KEY": "SD63236305",
            "NUONUO_APP_SECRET": "SDDED2523BED4643", "NUONUO_ACCESS_TOKEN": "test-token",
            "NUONUO_CLERK": "张三", "NUONUO_FILE_HOSTS": "inv.jss.com.cn",
            "NUONUO_URL": "https://sdk.nuonuo.com/open/v1/services",
            # The keys that seal personal data (app/pii.py), made for the test.
            "PII_KEYS": f"p0:{base64.b64encode(os.urandom(32)).decode()}",
            "PII_SEARCH_KEY": base64.b64encode(os.urandom(32)).decode()}
