"""Adapters to the outside world (SMS, e-mail, payment providers, the e-invoicing platform);
SMS, e-mail and e-invoices have local stand-ins here, the payment providers' simulator is the
development package app/sandbox/."""
