"""Adapters to the outside world (SMS, e-mail, payment providers); SMS and e-mail have local
stand-ins here, the payment providers' simulator is the development package app/sandbox/."""
