"""SMS adapters: Alibaba Cloud SMS and Tencent Cloud SMS through their own SDKs (which sign and
send), and the development sandbox that writes each message to the log and an outbox file.

Chinese providers send only pre-approved templates under an approved sign name: a notice that
may go by SMS names its template kind (SMS_TEMPLATES) and carries that kind's parameters; the
deployment maps each kind and language to the provider's template code. Delivery is reported
later: `receipts()` asks the provider for the reports of messages it accepted.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from flask import current_app

from app.gateways import missing_secret, secret_setting
from app.search_keys import normalised_mobile

log = logging.getLogger(__name__)
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Every kind of notice that can go by SMS, with its template's parameters in the order the
# template uses them (Tencent's parameters are positional: {1}, {2}…; Alibaba's are named:
# ${unit}…). Free text (a reviewer's reason, the list of names) stays in the e-mail: the
# providers approve only templates whose variables are short values.
SMS_TEMPLATES: dict[str, tuple[str, ...]] = {
    "verification_code": ("code",),
    "payment_due": ("unit", "count", "fee", "transfer", "online"),
    "badges_upgraded": ("unit", "count"),
    "review_failed": ("unit", "count"),
    "transfer_rejected": ("unit", "amount", "order"),
    "overpayment_received": ("unit", "amount", "order", "number"),
    "overpayment_cancelled_order": ("unit", "amount", "order", "number"),
    "overpayment_refunded": ("unit", "amount", "order", "number"),
    "claim_to_owner": ("unit",),
    "claim_received": ("unit",),
    "claim_handed_over": ("unit",),
    "claim_approved": (),
    "claim_withdrawn": (),
    "claim_refused": (),
}
SMS_LANGUAGES = ("zh", "en")
BACKENDS = ("log", "aliyun", "tencent")


class SmsError(Exception):
    """A message the provider did not take. `transient` ones (throttling, the provider or the
    network down) are tried again by the job's retries; the others (a bad number, a template
    not approved, a wrong key) fail the notice at once with the provider's code."""

    def __init__(self, code: str, message: str, transient: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class SmsMessage:
    recipient: str
    language: str
    template: str | None
    params: dict[str, str]
    # The rendered text: what the sandbox writes; providers render their own template.
    text: str


@dataclass(frozen=True)
class SmsSent:
    provider: str
    message_id: str | None


@dataclass(frozen=True)
class SentSms:
    """A message the provider accepted and has not reported on yet."""

    message_id: str
    recipient: str
    sent_at: datetime


@dataclass(frozen=True)
class SmsReceipt:
    message_id: str
    delivered: bool
    code: str
    at: datetime | None


class SmsGateway(Protocol):
    provider: str

    def send(self, message: SmsMessage) -> SmsSent: ...

    def receipts(self, pending: list[SentSms]) -> list[SmsReceipt]: ...


def e164(mobile: str) -> str:
    """The number in E.164 (+8613123456789); SmsError for one that is no phone number."""
    normalised = normalised_mobile(mobile)
    if normalised is None:
        raise SmsError("invalid_number", f"not a phone number: {mobile!r}")
    return normalised if normalised.startswith("+") else "+86" + normalised


def _endpoint(value: str) -> tuple[str, str]:
    """(scheme, host[:port]) of an endpoint setting: a bare host is HTTPS; the loopback stub
    of the tests is given as http://127.0.0.1:<port>."""
    if "://" in value:
        scheme, host = value.split("://", 1)
        return scheme, host.rstrip("/")
    return "https", value


def _template_code(provider: str, message: SmsMessage) -> str:
    codes = current_app.config.get(f"{provider.upper()}_SMS_TEMPLATES") or {}
    if isinstance(codes, str):
        codes = json.loads(codes)
    code = (codes.get(message.template or "") or {}).get(message.language)
    if not code:
        raise SmsError("template_not_configured",
                       f"no {provider} template for {message.template!r} in "
                       f"{message.language!r} ({provider.upper()}_SMS_TEMPLATES)")
    return code


def _ordered_params(message: SmsMessage) -> list[str]:
    return [str(message.params.get(name, "")) for name in SMS_TEMPLATES[message.template]]


def _beijing(value: str | None) -> datetime | None:
    """A provider's report time ("2026-12-02 15:04:05", Beijing time) as an aware datetime."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
    except ValueError:
        return None


class LogSmsGateway:
    """Sandbox: 'sends' by logging and appending to the SMS_OUTBOX file."""

    provider = "log"

    def send(self, message: SmsMessage) -> SmsSent:
        if not message.recipient:
            raise SmsError("invalid_number", "no mobile number")
        log.info("SMS to %s: %s", message.recipient, message.text)
        path = current_app.config["SMS_OUTBOX"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"to": message.recipient, "text": message.text,
                                 "template": message.template, "params": message.params,
                                 "at": datetime.now(timezone.utc).isoformat()},
                                ensure_ascii=False) + "\n")
        return SmsSent(self.provider, None)

    def receipts(self, pending: list[SentSms]) -> list[SmsReceipt]:
        return []


# Alibaba's answer codes (https://help.aliyun.com/document_detail/101346.html): throttling and
# its own faults pass; anything else (bad number, sign or template, balance) will not.
ALIYUN_TRANSIENT = {"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "isp.SYSTEM_ERROR",
                    "isp.GATEWAY_ERROR", "Throttling", "Throttling.User", "Throttling.Api",
                    "ServiceUnavailable", "InternalError", "SignatureNonceUsed"}


class AliyunSmsGateway:
    """Alibaba Cloud SMS (Dysmsapi 2017-05-25): SendSms and QuerySendDetails, signed by the
    SDK (ACS3-HMAC-SHA256 in alibabacloud-tea-openapi 0.4)."""

    provider = "aliyun"

    def __init__(self) -> None:
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi.models import Config

        config = current_app.config
        scheme, host = _endpoint(config["ALIYUN_SMS_ENDPOINT"])
        timeout_ms = int(float(config["SMS_TIMEOUT"]) * 1000)
        self.client = Client(Config(
            access_key_id=config.get("ALIYUN_SMS_ACCESS_KEY_ID") or "",
            access_key_secret=secret_setting("ALIYUN_SMS_ACCESS_KEY_SECRET"),
            region_id=config["ALIYUN_SMS_REGION"], endpoint=host, protocol=scheme,
            connect_timeout=timeout_ms, read_timeout=timeout_ms))
        self.sign_name = config.get("ALIYUN_SMS_SIGN_NAME") or ""

    def _call(self, name: str, request: Any) -> Any:
        from alibabacloud_tea_openapi.exceptions import (
            ClientException,
            ServerException,
            ThrottlingException,
        )

        try:
            return getattr(self.client, name)(request).body
        except ThrottlingException as exc:
            raise SmsError(exc.code or "Throttling", exc.message or "", transient=True) from exc
        except ClientException as exc:
            # 4xx: a wrong key or signature, a refused parameter: trying again will not help,
            # unless the gateway itself throttled.
            code = exc.code or "ClientError"
            raise SmsError(code, exc.message or "", transient=code in ALIYUN_TRANSIENT) from exc
        except ServerException as exc:
            raise SmsError(exc.code or "ServerError", exc.message or "", transient=True) from exc
        except Exception as exc:  # the SDK wraps network failures (refused, timed out)
            raise SmsError("network", str(exc)[:300], transient=True) from exc

    def send(self, message: SmsMessage) -> SmsSent:
        from alibabacloud_dysmsapi20170525 import models

        template = _template_code(self.provider, message)
        params = {name: str(message.params.get(name, ""))
                  for name in SMS_TEMPLATES[message.template]}
        # Mainland numbers with 86, others with their country code; never a leading "+".
        body = self._call("send_sms", models.SendSmsRequest(
            phone_numbers=e164(message.recipient).lstrip("+"), sign_name=self.sign_name,
            template_code=template,
            template_param=json.dumps(params, ensure_ascii=False) if params else None))
        if body.code != "OK":
            raise SmsError(body.code or "unknown", body.message or "",
                           transient=body.code in ALIYUN_TRANSIENT)
        return SmsSent(self.provider, body.biz_id)

    def receipts(self, pending: list[SentSms]) -> list[SmsReceipt]:
        """One QuerySendDetails per message (the API reports by number, day and BizId)."""
        from alibabacloud_dysmsapi20170525 import models

        found = []
        for sent in pending:
            body = self._call("query_send_details", models.QuerySendDetailsRequest(
                phone_number=e164(sent.recipient).lstrip("+"), biz_id=sent.message_id,
                send_date=sent.sent_at.astimezone(SHANGHAI).strftime("%Y%m%d"),
                page_size=10, current_page=1))
            if body.code != "OK":
                raise SmsError(body.code or "unknown", body.message or "",
                               transient=body.code in ALIYUN_TRANSIENT)
            details = body.sms_send_detail_dtos.sms_send_detail_dto \
                if body.sms_send_detail_dtos else []
            for detail in details or []:
                # SendStatus: 1 waiting for the carrier's report, 2 failed, 3 delivered.
                if detail.send_status in (2, 3):
                    found.append(SmsReceipt(sent.message_id, detail.send_status == 3,
                                            detail.err_code or "", _beijing(detail.receive_date)))
                    break
        return found


# Tencent's error codes (https://cloud.tencent.com/document/product/382/55981): limits and its
# own faults pass; the rest (number, sign, template, key, balance) will not.
TENCENT_TRANSIENT_PREFIXES = ("LimitExceeded.", "RequestLimitExceeded", "InternalError",
                              "ServerNetworkError", "ClientNetworkError",
                              "FailedOperation.FailResolvePacket")


def _tencent_transient(code: str) -> bool:
    return code.startswith(TENCENT_TRANSIENT_PREFIXES)


class TencentSmsGateway:
    """Tencent Cloud SMS (API 2021-01-11): SendSms and PullSmsSendStatus, signed by the SDK
    (TC3-HMAC-SHA256)."""

    provider = "tencent"
    PULL_LIMIT = 100

    def __init__(self) -> None:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        config = current_app.config
        scheme, host = _endpoint(config["TENCENT_SMS_ENDPOINT"])
        profile = ClientProfile(httpProfile=HttpProfile(
            protocol=scheme, endpoint=host, reqMethod="POST",
            reqTimeout=int(float(config["SMS_TIMEOUT"]))))
        self.client = sms_client.SmsClient(
            credential.Credential(config.get("TENCENT_SMS_SECRET_ID") or "",
                                  secret_setting("TENCENT_SMS_SECRET_KEY")),
            config["TENCENT_SMS_REGION"], profile)
        self.app_id = config.get("TENCENT_SMS_SDK_APP_ID") or ""
        self.sign_name = config.get("TENCENT_SMS_SIGN_NAME") or ""

    def _call(self, name: str, request: Any) -> Any:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )

        try:
            return getattr(self.client, name)(request)
        except TencentCloudSDKException as exc:
            code = exc.code or "unknown"
            raise SmsError(code, str(exc.message or "")[:300],
                           transient=_tencent_transient(code)) from exc
        except Exception as exc:  # requests' own failures the SDK lets through
            raise SmsError("ClientNetworkError", str(exc)[:300], transient=True) from exc

    def send(self, message: SmsMessage) -> SmsSent:
        from tencentcloud.sms.v20210111 import models

        request = models.SendSmsRequest()
        request.PhoneNumberSet = [e164(message.recipient)]
        request.SmsSdkAppId = self.app_id
        request.SignName = self.sign_name
        request.TemplateId = _template_code(self.provider, message)
        request.TemplateParamSet = _ordered_params(message)
        answer = self._call("SendSms", request)
        if len(answer.SendStatusSet or []) != 1:
            raise SmsError("unexpected_answer", f"no status for the number: {answer}",
                           transient=True)
        [status] = answer.SendStatusSet
        # The call succeeds as a whole; each number has its own code ("Ok" when accepted).
        if status.Code != "Ok":
            raise SmsError(status.Code, status.Message or "",
                           transient=_tencent_transient(status.Code))
        return SmsSent(self.provider, status.SerialNo)

    def receipts(self, pending: list[SentSms]) -> list[SmsReceipt]:
        """Pull the reports not pulled yet (Tencent hands each out once), up to 10 pages."""
        from tencentcloud.sms.v20210111 import models

        found = []
        for _page in range(10):
            request = models.PullSmsSendStatusRequest()
            request.Limit = self.PULL_LIMIT
            request.SmsSdkAppId = self.app_id
            reports = self._call("PullSmsSendStatus", request).PullSmsSendStatusSet or []
            found += [SmsReceipt(r.SerialNo, r.ReportStatus == "SUCCESS",
                                 r.Description or r.ReportStatus or "",
                                 _beijing(r.UserReceiveTime)) for r in reports]
            if len(reports) < self.PULL_LIMIT:
                break
        return found


def sms_gateway() -> SmsGateway:
    backend = current_app.config.get("SMS_BACKEND", "log")
    if backend == "log":
        return LogSmsGateway()
    if backend == "aliyun":
        return AliyunSmsGateway()
    if backend == "tencent":
        return TencentSmsGateway()
    raise RuntimeError(f"unknown SMS_BACKEND {backend!r}")


def missing_settings(config: Any) -> list[str]:
    """The settings a production start needs for SMS and lacks (empty when all is set)."""
    backend = config.get("SMS_BACKEND")
    if backend not in BACKENDS:
        return [f"SMS_BACKEND (one of {', '.join(BACKENDS)}, not {backend!r})"]
    if backend == "log":
        return ["SMS_BACKEND (the log sandbox sends nothing: aliyun or tencent)"]
    prefix = backend.upper() + "_SMS_"
    secret = "ACCESS_KEY_SECRET" if backend == "aliyun" else "SECRET_KEY"
    needed = (["ACCESS_KEY_ID", "SIGN_NAME"] if backend == "aliyun"
              else ["SECRET_ID", "SDK_APP_ID", "SIGN_NAME"])
    missing = [prefix + name for name in needed if not config.get(prefix + name)]
    missing += missing_secret(config, prefix + secret)
    if _endpoint(config.get(prefix + "ENDPOINT") or "")[0] != "https":
        missing.append(prefix + "ENDPOINT (https only: http:// is for the tests' stub)")
    codes = config.get(prefix + "TEMPLATES") or {}
    try:
        codes = json.loads(codes) if isinstance(codes, str) else codes
    except ValueError:
        return missing + [prefix + "TEMPLATES (not JSON)"]
    lacking = [f"{kind}/{lang}" for kind in SMS_TEMPLATES for lang in SMS_LANGUAGES
               if not (codes.get(kind) or {}).get(lang)]
    if lacking:
        missing.append(f"{prefix}TEMPLATES (no template code for {', '.join(lacking)})")
    return missing
