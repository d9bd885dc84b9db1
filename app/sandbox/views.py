"""The sandbox's pages, standing for the providers' sites: `/sandbox/pay/qr/<channel>/<payment>`
('scan with your phone') and `/sandbox/pay/bank` (UnionPay's B2B page, frontTransReq.do)."""
from __future__ import annotations

import os

from flask import abort, current_app, redirect, request
from flask_appbuilder import BaseView, expose
from flask_babel import gettext as _

from app import models as m
from app.sandbox.simulator import PaymentSandbox, current_sandbox
from app.views.payments import channel_or_404, qr_image

Ch = m.PaymentChannel


class PaymentSandboxView(BaseView):
    """What the payer sees at the provider, played by the sandbox. No login: a phone that
    scans the QR code has none. 404 while PAYMENT_SANDBOX is off (tests switch it at run
    time); not registered at all when the app starts with it off."""

    route_base = "/sandbox/pay"
    # Absolute: FAB makes every view's blueprint relative to its own package.
    template_folder = os.path.join(os.path.dirname(__file__), "templates")

    @staticmethod
    def _sandbox() -> PaymentSandbox:
        if not current_app.config["PAYMENT_SANDBOX"]:
            abort(404)
        return current_sandbox()

    @expose("/qr/<string:channel>/<string:number>", methods=["GET", "POST"])
    def qr_page(self, channel: str, number: str):
        """'Scan with your phone': the QR code and the button that pays."""
        sandbox = self._sandbox()
        qr_channel = channel_or_404(channel, m.QR_CHANNELS)
        answer = sandbox.pay(qr_channel, number) if request.method == "POST" else None
        trade = sandbox.ledger.trade(qr_channel, number)
        if trade is None:
            abort(404)
        return self.render_template("sandbox/qr.html", title=_("Payment sandbox"),
                                    channel=qr_channel, trade=trade, answer=answer,
                                    qr_image=qr_image(request.base_url))

    @expose("/bank", methods=["GET", "POST"])
    def bank(self):
        """UnionPay's frontTransReq.do for B2B: the unit's browser posts the merchant's
        signed order (no CSRF token: it comes from the merchant's page, as to UnionPay)."""
        trade = self._sandbox().open_b2b(request.values)
        if trade is None:
            abort(400)
        return self.render_template("sandbox/bank.html", title=_("Payment sandbox"),
                                    trade=trade, answer=None)

    @expose("/bank/<string:number>", methods=["POST"])
    def bank_pay(self, number: str):
        """Pay from the company account: notify the merchant, then go back to its page."""
        sandbox = self._sandbox()
        answer = sandbox.pay(Ch.b2b, number)
        trade = sandbox.ledger.trade(Ch.b2b, number)
        if answer is None or trade is None:
            abort(404)
        if answer.status == 200 and trade.return_url:
            return redirect(trade.return_url)
        return self.render_template("sandbox/bank.html", title=_("Payment sandbox"),
                                    trade=trade, answer=answer)
