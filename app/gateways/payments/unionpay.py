"""UnionPay ACP (全渠道) 5.1.0: UnionPay's QR code product (二维码支付), consumer-scanned.

The payer scans a code UnionPay issued for our order (申请二维码: txnType 01, txnSubType 07,
bizType 000000, channelType 08, to backTransReq.do; the answer carries `qrCode`); UnionPay
notifies the outcome to backUrl; refunds go by origQryId and are settled through the query
(`acp`). Field by field as in UnionPay's QR demo (upacp_demo_b2c/demo/api_16_qrc,
tests/data/unionpay-SOURCES.md)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app import models as m
from app.clock import now
from app.gateways.payments.acp import BACK_PATH, AcpGateway, acp_settings, txn_time
from app.gateways.payments.base import GatewayError, Link, notify_url


class UnionPayGateway(AcpGateway):
    """UnionPay's QR code product: the code to show, its notifications, refunds."""

    channel = m.PaymentChannel.unionpay
    biz_type = "000000"
    channel_type = "07"

    def create(self, payment: m.Payment, order: m.Order) -> dict[str, str]:
        fields = self._fields("01", "07", txn_time(now()), orderId=payment.number,
                              txnAmt=str(payment.amount_fen), currencyCode="156",
                              backUrl=notify_url(self.channel))
        fields["channelType"] = "08"  # the QR code is paid from a phone
        answer = self._call(BACK_PATH, fields)
        if answer.get("respCode") != "00" or not answer.get("qrCode"):
            raise GatewayError(answer.get("respMsg") or "QR code refused")
        return {"qr_code": answer["qrCode"]}


def configured(config: Mapping[str, Any], link: Link) -> UnionPayGateway:
    """The adapter for the real UnionPay, from the settings in config.py."""
    return UnionPayGateway(acp_settings(config, "UNIONPAY"), link)
