"""The scoping layer: who acts (actor.py), what each actor may read and change (rules.py), and
the data interface every view, API, export and action queries through (interface.py)."""
