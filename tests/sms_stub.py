"""Loopback stand-ins for Alibaba Cloud SMS and Tencent Cloud SMS, for the tests only: they
check what the providers' SDKs really send and answer in the providers' shapes.

Each verifies the request's signature with its own copy of the secret, per the provider's
published algorithm, so a wrong secret is refused as the provider would:
- Alibaba Cloud, V3 signature ACS3-HMAC-SHA256
  (https://help.aliyun.com/zh/sdk/product-overview/v3-request-structure-and-signature);
- Tencent Cloud, TC3-HMAC-SHA256 (https://cloud.tencent.com/document/api/382/52072).
Answers follow the providers' API references: Dysmsapi 2017-05-25 SendSms / QuerySendDetails
(Code "OK", BizId, RequestId; isv.* business codes with HTTP 200) and SMS 2021-01-11 SendSms /
PullSmsSendStatus (Response.SendStatusSet with a Code per number; Response.Error otherwise).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A signed request older or newer than this is refused (both providers allow 15 minutes on
# the date header; Tencent 5 minutes on its timestamp).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class Sent:
    """One message the stub took: what the SDK sent for it."""

    message_id: str
    phone: str
    sign_name: str
    template: str
    params: Any
    at: datetime


@dataclass
class ProviderStub:
    """The common part: the HTTP server on loopback, the requests seen, scripted answers."""

    key_id: str
    secret: str
    sign_name: str
    # Template code -> the parameters it takes (named for Alibaba, a count for Tencent).
    templates: dict[str, Any]
    # Numbers the carrier refuses (the provider answers with its "bad number" code).
    refused_numbers: set[str] = field(default_factory=set)
    requests: list[dict] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    # Answers to give instead of the normal one, in order, per action: the action's own
    # error code (e.g. "isv.BUSINESS_LIMIT_CONTROL").
    scripted: dict[str, deque] = field(default_factory=dict)
    # Delivery reports waiting to be asked for: message id -> (delivered, code).
    reports: dict[str, tuple[bool, str]] = field(default_factory=dict)
    # As each provider labels its JSON (the Tencent SDK reads errors only under its own).
    content_type = "application/json;charset=utf-8"

    def start(self) -> "ProviderStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer, headers = stub.handle(self.command, self.path,
                                                      dict(self.headers.items()), body)
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", stub.content_type)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        self.requests.clear()
        self.sent.clear()
        self.scripted.clear()
        self.reports.clear()
        self.refused_numbers.clear()

    def script(self, action: str, *codes: str) -> None:
        self.scripted.setdefault(action, deque()).extend(codes)

    def next_scripted(self, action: str) -> str | None:
        queue = self.scripted.get(action)
        return queue.popleft() if queue else None

    def report(self, message_id: str, delivered: bool, code: str) -> None:
        self.reports[message_id] = (delivered, code)

    def handle(self, method: str, path: str, headers: dict, body: bytes
               ) -> tuple[int, dict, dict]:
        raise NotImplementedError


def _fresh(moment: datetime) -> bool:
    return abs(datetime.now(timezone.utc) - moment) <= CLOCK_SKEW


# --------------------------------------------------------------------------------------------
# Alibaba Cloud SMS
# --------------------------------------------------------------------------------------------

def _acs_encode(value: str) -> str:
    """RFC 3986 percent-encoding as the V3 signature's canonical query uses it."""
    return quote(value, safe="~")


def acs3_signature(secret: str, method: str, path: str, query: list[tuple[str, str]],
                   headers: dict[str, str], signed: list[str], payload_hash: str) -> str:
    """ACS3-HMAC-SHA256 per Alibaba Cloud's V3 signature document."""
    canonical_query = "&".join(f"{_acs_encode(k)}={_acs_encode(v)}"
                               for k, v in sorted(query))
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    canonical_request = "\n".join([method, path or "/", canonical_query, canonical_headers,
                                   ";".join(signed), payload_hash])
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(
        canonical_request.encode()).hexdigest()
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


ALIYUN_AUTH = re.compile(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),"
                         r"Signature=([0-9a-f]{64})$")
# Headers the V3 signature must cover (the document's "x-acs-*, host, content-type").
ALIYUN_MUST_SIGN = {"host", "x-acs-action", "x-acs-version", "x-acs-date",
                    "x-acs-signature-nonce", "x-acs-content-sha256"}


@dataclass
class AliyunStub(ProviderStub):
    """Dysmsapi 2017-05-25 on loopback."""

    def _error(self, status: int, code: str, message: str) -> tuple[int, dict, dict]:
        return status, {"RequestId": str(uuid.uuid4()).upper(), "Code": code,
                        "Message": message, "HostId": "dysmsapi.aliyuncs.com"}, {}

    def _authenticate(self, method: str, path: str, headers: dict, body: bytes
                      ) -> tuple[int, dict, dict] | None:
        lower = {k.lower(): v for k, v in headers.items()}
        match = ALIYUN_AUTH.match(lower.get("authorization", ""))
        if not match:
            return self._error(400, "IncompleteSignature",
                               "The request signature does not conform to Aliyun standards.")
        key_id, signed, signature = match.group(1), match.group(2).split(";"), match.group(3)
        if key_id != self.key_id:
            return self._error(404, "InvalidAccessKeyId.NotFound",
                               "Specified access key is not found.")
        if not ALIYUN_MUST_SIGN <= set(signed) or signed != sorted(signed) or \
                any(name not in lower for name in signed):
            return self._error(400, "IncompleteSignature",
                               "The request signature does not conform to Aliyun standards.")
        if lower["x-acs-content-sha256"] != hashlib.sha256(body).hexdigest():
            return self._error(400, "IncompleteSignature",
                               "The payload hash does not match x-acs-content-sha256.")
        stamp = datetime.strptime(lower["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc)
        if not _fresh(stamp):
            return self._error(400, "InvalidTimeStamp.Expired",
                               "Specified time stamp or date value is expired.")
        parts = urlsplit(path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        expected = acs3_signature(self.secret, method, parts.path, query, lower, signed,
                                  lower["x-acs-content-sha256"])
        if not hmac.compare_digest(expected, signature):
            return self._error(400, "SignatureDoesNotMatch",
                               "Specified signature is not matched with our calculation.")
        return None

    def handle(self, method: str, path: str, headers: dict, body: bytes
               ) -> tuple[int, dict, dict]:
        refused = self._authenticate(method, path, headers, body)
        lower = {k.lower(): v for k, v in headers.items()}
        query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
        query.update(parse_qsl(body.decode(), keep_blank_values=True))
        action = lower.get("x-acs-action", "")
        self.requests.append({"action": action, "query": query, "headers": lower,
                              "refused": refused is not None})
        if refused:
            return refused
        if lower.get("x-acs-version") != "2017-05-25":
            return self._error(400, "InvalidVersion", "Specified parameter Version is not valid.")
        if action == "SendSms":
            return self._send(query)
        if action == "QuerySendDetails":
            return self._details(query)
        return self._error(404, "InvalidAction.NotFound", "Specified api is not found.")

    def _ok(self, **extra: Any) -> tuple[int, dict, dict]:
        return 200, {"RequestId": str(uuid.uuid4()).upper(), "Code": "OK", "Message": "OK",
                     **extra}, {}

    def _business(self, code: str, message: str) -> tuple[int, dict, dict]:
        # Business refusals come back with HTTP 200 and the isv.* code.
        return 200, {"RequestId": str(uuid.uuid4()).upper(), "Code": code,
                     "Message": message}, {}

    def _send(self, query: dict) -> tuple[int, dict, dict]:
        scripted = self.next_scripted("SendSms")
        if scripted == "isv.BUSINESS_LIMIT_CONTROL":
            return self._business(scripted, "触发分钟级流控Permits:1")
        if scripted:
            return self._business(scripted, "scripted")
        phone = query.get("PhoneNumbers", "")
        if not re.fullmatch(r"\d{6,15}", phone) or phone in self.refused_numbers:
            return self._business("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if query.get("SignName") != self.sign_name:
            return self._business("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        template = query.get("TemplateCode", "")
        if template not in self.templates:
            return self._business("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            params = json.loads(query["TemplateParam"]) if query.get("TemplateParam") else {}
        except ValueError:
            return self._business("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if set(params) != set(self.templates[template]):
            return self._business("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值")
        biz_id = f"{len(self.sent) + 900619746936498440}^0"
        self.sent.append(Sent(biz_id, phone, query["SignName"], template, params,
                              datetime.now(SHANGHAI)))
        return self._ok(BizId=biz_id)

    def _details(self, query: dict) -> tuple[int, dict, dict]:
        found = [s for s in self.sent if s.message_id == query.get("BizId")
                 and s.phone == query.get("PhoneNumber")
                 and s.at.strftime("%Y%m%d") == query.get("SendDate")]
        details = []
        for s in found:
            delivered, code = self.reports.get(s.message_id, (None, ""))
            details.append({
                "PhoneNum": s.phone, "TemplateCode": s.template, "OutId": "",
                "Content": f"【{s.sign_name}】…",
                "SendDate": s.at.strftime("%Y-%m-%d %H:%M:%S"),
                "ReceiveDate": (s.at + timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S")
                if delivered is not None else "",
                "SendStatus": 1 if delivered is None else (3 if delivered else 2),
                "ErrCode": code})
        return self._ok(TotalCount=len(details),
                        SmsSendDetailDTOs={"SmsSendDetailDTO": details})


# --------------------------------------------------------------------------------------------
# Tencent Cloud SMS
# --------------------------------------------------------------------------------------------

def tc3_signature(secret: str, service: str, date: str, timestamp: str, method: str,
                  path: str, query: str, content_type: str, host: str, payload: bytes) -> str:
    """TC3-HMAC-SHA256 per Tencent Cloud's signature v3 document."""
    canonical_request = "\n".join([
        method, path or "/", query, f"content-type:{content_type.strip().lower()}\n"
        f"host:{host.strip().lower()}\n", "content-type;host",
        hashlib.sha256(payload).hexdigest()])
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(["TC3-HMAC-SHA256", timestamp, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])

    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing = sign(sign(sign(("TC3" + secret).encode(), date), service), "tc3_request")
    return hmac.new(signing, string_to_sign.encode(), hashlib.sha256).hexdigest()


TENCENT_AUTH = re.compile(r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/([a-z]+)/"
                          r"tc3_request, SignedHeaders=([a-z;-]+), Signature=([0-9a-f]{64})$")


@dataclass
class TencentStub(ProviderStub):
    """SMS 2021-01-11 on loopback."""

    app_id: str = ""
    content_type = "application/json"

    def _error(self, code: str, message: str) -> tuple[int, dict, dict]:
        return 200, {"Response": {"Error": {"Code": code, "Message": message},
                                  "RequestId": str(uuid.uuid4())}}, {}

    def _authenticate(self, method: str, path: str, headers: dict, body: bytes
                      ) -> tuple[int, dict, dict] | None:
        lower = {k.lower(): v for k, v in headers.items()}
        match = TENCENT_AUTH.match(lower.get("authorization", ""))
        if not match:
            return self._error("AuthFailure.SignatureFailure",
                               "The provided credentials could not be validated.")
        key_id, date, service, signed, signature = match.groups()
        if key_id != self.key_id:
            return self._error("AuthFailure.SecretIdNotFound",
                               "The SecretId is not found, please ensure that your SecretId "
                               "is correct.")
        timestamp = lower.get("x-tc-timestamp", "")
        if not timestamp.isdigit() or not _fresh(
                datetime.fromtimestamp(int(timestamp), timezone.utc)):
            return self._error("AuthFailure.SignatureExpire", "Signature expired.")
        if service != "sms" or signed != "content-type;host" or date != datetime.fromtimestamp(
                int(timestamp), timezone.utc).strftime("%Y-%m-%d"):
            return self._error("AuthFailure.SignatureFailure",
                               "The provided credentials could not be validated.")
        parts = urlsplit(path)
        expected = tc3_signature(self.secret, service, date, timestamp, method, parts.path,
                                 parts.query, lower.get("content-type", ""),
                                 lower.get("host", ""), body)
        if not hmac.compare_digest(expected, signature):
            return self._error("AuthFailure.SignatureFailure",
                               "The provided credentials could not be validated. Please check "
                               "your signature is correct.")
        return None

    def handle(self, method: str, path: str, headers: dict, body: bytes
               ) -> tuple[int, dict, dict]:
        refused = self._authenticate(method, path, headers, body)
        lower = {k.lower(): v for k, v in headers.items()}
        action = lower.get("x-tc-action", "")
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        self.requests.append({"action": action, "params": params, "headers": lower,
                              "refused": refused is not None})
        if refused:
            return refused
        if lower.get("x-tc-version") != "2021-01-11":
            return self._error("InvalidParameter", "Invalid X-TC-Version.")
        if params.get("SmsSdkAppId") != self.app_id:
            return self._error("FailedOperation.SmsSdkAppIdVerifyFail",
                               "SmsSdkAppId verify fail.")
        if action == "SendSms":
            return self._send(params)
        if action == "PullSmsSendStatus":
            return self._pull(params)
        return self._error("InvalidAction", "The action requested is invalid.")

    def _send(self, params: dict) -> tuple[int, dict, dict]:
        if params.get("SignName") != self.sign_name:
            return self._error("FailedOperation.SignatureIncorrectOrUnapproved",
                               "signature format error or signature not approved")
        template = params.get("TemplateId", "")
        if template not in self.templates:
            return self._error("FailedOperation.TemplateIncorrectOrUnapproved",
                               "template format error or template not approved")
        values = params.get("TemplateParamSet") or []
        if len(values) != self.templates[template] or \
                not all(isinstance(v, str) for v in values):
            return self._error("FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                               "request content does not match template content")
        statuses = []
        for phone in params.get("PhoneNumberSet") or []:
            scripted = self.next_scripted("SendSms")
            status = {"PhoneNumber": phone, "Fee": 0, "SessionContext": "",
                      "SerialNo": "", "IsoCode": "CN"}
            if scripted:
                statuses.append({**status, "Code": scripted, "Message": "scripted"})
            elif not re.fullmatch(r"\+\d{6,15}", phone) or phone in self.refused_numbers:
                statuses.append({**status, "Code": "InvalidParameterValue.IncorrectPhoneNumber",
                                 "Message": "incorrect phone number", "IsoCode": ""})
            else:
                serial = f"2645:{len(self.sent) + 104571066915705365784949}"
                self.sent.append(Sent(serial, phone, params["SignName"], template, values,
                                      datetime.now(SHANGHAI)))
                statuses.append({**status, "Fee": 1, "SerialNo": serial, "Code": "Ok",
                                 "Message": "send success"})
        return 200, {"Response": {"SendStatusSet": statuses,
                                  "RequestId": str(uuid.uuid4())}}, {}

    def _pull(self, params: dict) -> tuple[int, dict, dict]:
        limit = int(params.get("Limit") or 0)
        if not 1 <= limit <= 100:
            return self._error("InvalidParameterValue.InvalidLimit", "limit must be 1-100")
        taken = list(self.reports.items())[:limit]
        by_id = {s.message_id: s for s in self.sent}
        answer = []
        for serial, (delivered, code) in taken:
            # Tencent hands out each report once.
            del self.reports[serial]
            sent = by_id[serial]
            answer.append({
                "UserReceiveTime": (sent.at + timedelta(seconds=3)).strftime(
                    "%Y-%m-%d %H:%M:%S"),
                "CountryCode": "86", "SubscriberNumber": sent.phone.removeprefix("+86"),
                "PhoneNumber": sent.phone, "SerialNo": serial,
                "ReportStatus": "SUCCESS" if delivered else "FAIL",
                "Description": code, "SessionContext": ""})
        return 200, {"Response": {"PullSmsSendStatusSet": answer,
                                  "RequestId": str(uuid.uuid4())}}, {}


# --------------------------------------------------------------------------------------------
# The app's settings for a provider (the stub's endpoint, or the real one for a production
# start that sends nothing)
# --------------------------------------------------------------------------------------------

KEYS = {"aliyun": ("LTAI5tStubAccessKeyId", "stub-aliyun-access-key-secret"),
        "tencent": ("AKIDStubSecretId0000000000000000", "stub-tencent-secret-key")}
SIGN_NAME = "进博会"
TENCENT_APP_ID = "1400000001"


def template_codes(provider: str) -> dict[str, dict[str, str]]:
    """A template code per kind and language, as the provider would have approved them."""
    from app.gateways.sms import SMS_LANGUAGES, SMS_TEMPLATES

    codes = {}
    for number, kind in enumerate(SMS_TEMPLATES):
        codes[kind] = {lang: (f"SMS_4{number:03d}{i}" if provider == "aliyun"
                              else f"2{number:03d}{i}")
                       for i, lang in enumerate(SMS_LANGUAGES)}
    return codes


def make_stub(provider: str) -> ProviderStub:
    from app.gateways.sms import SMS_TEMPLATES

    key_id, secret = KEYS[provider]
    approved = {code: (SMS_TEMPLATES[kind] if provider == "aliyun"
                       else len(SMS_TEMPLATES[kind]))
                for kind, by_lang in template_codes(provider).items()
                for code in by_lang.values()}
    if provider == "aliyun":
        return AliyunStub(key_id, secret, SIGN_NAME, approved).start()
    return TencentStub(key_id, secret, SIGN_NAME, approved, app_id=TENCENT_APP_ID).start()


def provider_settings(provider: str, stub: ProviderStub | None = None,
                      secret: str | None = None) -> dict[str, str]:
    """The settings (as environment strings) that send through `provider`: to `stub` if
    given, with `secret` instead of the right one if given."""
    key_id, right_secret = KEYS[provider]
    prefix = provider.upper() + "_SMS_"
    settings = {"SMS_BACKEND": provider, prefix + "SIGN_NAME": SIGN_NAME,
                prefix + "TEMPLATES": json.dumps(template_codes(provider)), "SMS_TIMEOUT": "5"}
    if provider == "aliyun":
        settings.update({prefix + "ACCESS_KEY_ID": key_id,
                         prefix + "ACCESS_KEY_SECRET": secret or right_secret})
    else:
        settings.update({prefix + "SECRET_ID": key_id,
                         prefix + "SECRET_KEY": secret or right_secret,
                         prefix + "SDK_APP_ID": TENCENT_APP_ID})
    if stub is not None:
        settings[prefix + "ENDPOINT"] = stub.url
    return settings
