"""The B2B gateway (企业网银, 公对公): UnionPay's B2B product over UnionPay ACP (全渠道)
5.1.0, bizType 000202. The unit's browser posts our signed order to UnionPay's
frontTransReq.do, chooses its bank and pays from the company account there; UnionPay
notifies backUrl and sends the browser back to frontUrl. Refunds go by origQryId and are
settled through the query (`acp`). Field by field as in UnionPay's B2B demos
(tests/data/unionpay-SOURCES.md)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import url_for

from app import models as m
from app.clock import now
from app.gateways.payments.acp import AcpGateway, acp_settings, txn_time
from app.gateways.payments.base import Link, notify_url


class B2BGateway(AcpGateway):
    """UnionPay's B2B product: the signed form the browser posts, notifications, refunds."""

    channel = m.PaymentChannel.b2b
    biz_type = "000202"
    channel_type = "07"

    def create(self, payment: m.Payment, order: m.Order) -> dict[str, Any]:
        """{"form_action": frontTransReq.do, "form_fields": the signed order}: a form the
        unit's browser posts to UnionPay (a redirect cannot carry it)."""
        fields = self._fields("01", "01", txn_time(now()), orderId=payment.number,
                              txnAmt=str(payment.amount_fen), currencyCode="156",
                              backUrl=notify_url(self.channel),
                              frontUrl=url_for("PaymentNotifyView.back_from_bank",
                                               payment_id=payment.id, _external=True))
        return {"form_action": self.settings.front_url, "form_fields": self._signed(fields)}


def configured(config: Mapping[str, Any], link: Link) -> B2BGateway:
    """The adapter for UnionPay's B2B product, from the settings in config.py."""
    return B2BGateway(acp_settings(config, "B2B"), link)
