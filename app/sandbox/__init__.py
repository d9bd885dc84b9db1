"""The payment sandbox, a development package: a simulator of every provider, its pages and
templates. create_app loads it by name only when PAYMENT_SANDBOX is on; nothing else imports it."""
from __future__ import annotations

from flask import Flask
from flask_appbuilder import AppBuilder

from app import models as m
from app.extensions import csrf
from app.gateways.payments import PaymentGateway, install_gateway_factory
from app.sandbox.simulator import current_sandbox
from app.sandbox.views import PaymentSandboxView


def sandbox_gateway(channel: m.PaymentChannel) -> PaymentGateway:
    """The production adapter of `channel`, built with the sandbox's keys and link."""
    return current_sandbox().gateway(channel)


def register(app: Flask, appbuilder: AppBuilder) -> None:
    """The sandbox's pages, and its adapters for gateway_for."""
    appbuilder.add_view_no_menu(PaymentSandboxView)
    # The B2B order is posted from the merchant's page, as to UnionPay: no CSRF token.
    csrf.exempt(f"{PaymentSandboxView.__module__}.{PaymentSandboxView.bank.__name__}")
    install_gateway_factory(app, sandbox_gateway)
