"""Printable documents (PDF) made with reportlab: badge cards; shared helpers such as fonts."""
