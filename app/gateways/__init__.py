"""Adapters to the outside world (SMS, e-mail, payment providers) and their local sandboxes."""
