"""Payment providers behind one adapter interface per channel (`base.PaymentGateway`), one
module per provider; `gateway_for(channel)` builds the adapter a payment needs.

Each adapter turns a pending Payment into what the unit's page needs (`create`), checks a
provider's notification (`verify_notification`), answers it the way the provider expects
(`acknowledge` / `reject`) and sends refunds (`refund`). The adapters are the same code with
the real providers and in development: only their settings and their `Link` (the one HTTP hop
to the provider's API) differ. `HttpLink` speaks HTTPS to the provider, from the settings in
`config.py`. A development package may install its own factory for an app
(`install_gateway_factory`): the payment sandbox does, so that this package never imports it.
Notifications always come in through `POST /pay/notify/<channel>`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, current_app

from app import models as m
from app.gateways.payments import alipay, b2b, unionpay, wechat
from app.gateways.payments.alipay import AlipayGateway
from app.gateways.payments.base import (
    GatewayError,
    HttpLink,
    InvalidNotification,
    Link,
    PaymentGateway,
    ProviderUnreachable,
    fen_from_text,
    load_private_key,
    load_public_key,
    yuan_text,
    yuan_to_fen,
)
from app.gateways.payments.wechat import WechatPayGateway

__all__ = ["AlipayGateway", "GatewayError", "HttpLink", "InvalidNotification", "PaymentGateway",
           "ProviderUnreachable", "WechatPayGateway", "fen_from_text", "gateway_for",
           "install_gateway_factory", "load_private_key", "load_public_key",
           "production_gateway", "yuan_text", "yuan_to_fen"]

GatewayFactory = Callable[[m.PaymentChannel], PaymentGateway]
# Where an app keeps the factory a development package installed (app.extensions).
FACTORY_EXTENSION = "ciie_payment_gateway_factory"
PROVIDERS: dict[m.PaymentChannel, Callable[[Mapping[str, Any], Link], PaymentGateway]] = {
    m.PaymentChannel.alipay: alipay.configured, m.PaymentChannel.wechat: wechat.configured,
    m.PaymentChannel.unionpay: unionpay.configured, m.PaymentChannel.b2b: b2b.configured}


def production_gateway(channel: m.PaymentChannel, config: Mapping[str, Any],
                       link: Link) -> PaymentGateway:
    """The adapter for the real provider, from the settings in config.py."""
    if channel not in PROVIDERS:
        raise GatewayError(f"no online gateway for {channel.value}")
    return PROVIDERS[channel](config, link)


def install_gateway_factory(app: Flask, factory: GatewayFactory) -> None:
    """Let a development package play the providers for this app while PAYMENT_SANDBOX is on."""
    app.extensions[FACTORY_EXTENSION] = factory


def gateway_for(channel: m.PaymentChannel | str) -> PaymentGateway:
    """The adapter of an online channel: the installed factory's while PAYMENT_SANDBOX is on
    (the setting is read on each call: tests switch it off at run time), else the real one."""
    channel = m.PaymentChannel(channel)
    config = current_app.config
    installed = current_app.extensions.get(FACTORY_EXTENSION)
    if config["PAYMENT_SANDBOX"] and installed is not None:
        return installed(channel)
    return production_gateway(channel, config, HttpLink(config["PAYMENT_TIMEOUT"]))
