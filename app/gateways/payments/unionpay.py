"""UnionPay consumer-scanned QR and refunds, over the signed-parameter protocol (see
`base`): signature field `signature`, amounts `txnAmt` in fen, answers form-encoded,
`respCode` 00 = success, 03/04/05 = still in progress."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Request, Response

from app import models as m
from app.clock import now_shanghai
from app.gateways.payments.base import (
    GatewayError,
    InvalidNotification,
    Link,
    RefundAnswer,
    SignedParamsGateway,
    SignedParamsSettings,
    VerifiedNotification,
    fen_from_text,
    notified_amount,
    notify_url,
    order_subject,
    read_setting,
)


class UnionPayGateway(SignedParamsGateway):
    """UnionPay consumer-scanned QR (txnType 01/07) and refunds (txnType 04)."""

    channel = m.PaymentChannel.unionpay
    sign_field = "signature"
    merchant_field = "merId"
    PENDING_CODES = ("03", "04", "05")

    def _base(self, txn_type: str, txn_sub_type: str) -> dict[str, str]:
        return {"version": "5.1.0", "encoding": "UTF-8", "signMethod": "RSA-SHA256",
                "txnType": txn_type, "txnSubType": txn_sub_type, "bizType": "000000",
                "channelType": "08", "accessType": "0", "merId": self.settings.merchant_id,
                "txnTime": now_shanghai().strftime("%Y%m%d%H%M%S"), "currencyCode": "156"}

    def create(self, payment: m.Payment, order: m.Order) -> dict[str, str]:
        answer = self._call("/gateway/api/backTransReq.do", {
            **self._base("01", "07"), "orderId": payment.number,
            "txnAmt": str(payment.amount_fen), "orderDesc": order_subject(order),
            "backUrl": notify_url(self.channel)})
        if answer.get("respCode") != "00" or not answer.get("qrCode"):
            raise GatewayError(answer.get("respMsg") or "QR code refused")
        return {"qr_code": answer["qrCode"]}

    def verify_notification(self, request: Request) -> VerifiedNotification:
        params = self._notification(request)
        number, query_id = params.get("orderId"), params.get("queryId")
        if not number or not query_id:
            raise InvalidNotification("orderId or queryId missing")
        return VerifiedNotification(number, query_id,
                                    notified_amount(fen_from_text, params.get("txnAmt")),
                                    params.get("txnType") == "01"
                                    and params.get("respCode") == "00")

    def acknowledge(self) -> Response:
        return Response("ok", 200, mimetype="text/plain")

    def reject(self) -> Response:
        return Response("fail", 400, mimetype="text/plain")

    def refund(self, payment: m.Payment, refund_number: str, amount_fen: int) -> RefundAnswer:
        answer = self._call("/gateway/api/backTransReq.do", {
            **self._base("04", "00"), "orderId": refund_number,
            "origQryId": payment.provider_trade_no or "", "txnAmt": str(amount_fen)})
        code, message = answer.get("respCode"), answer.get("respMsg", "")
        if code == "00":
            return RefundAnswer("done", answer.get("queryId"), message)
        if code in self.PENDING_CODES:
            return RefundAnswer("pending", answer.get("queryId"), message)
        return RefundAnswer("failed", None, f"{code}: {message}")


def configured(config: Mapping[str, Any], link: Link) -> UnionPayGateway:
    """The adapter for the real UnionPay, from the settings in config.py."""
    return UnionPayGateway(SignedParamsSettings(
        read_setting(config, "UNIONPAY_MER_ID"), read_setting(config, "UNIONPAY_PRIVATE_KEY_FILE"),
        read_setting(config, "UNIONPAY_PUBLIC_KEY_FILE"),
        read_setting(config, "UNIONPAY_API_URL")), link)
