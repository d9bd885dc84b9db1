"""The state machines: transition tables and the functions that move records.

Each transition function takes the actor and ids, loads the rows scoped to the actor, checks
the allowed from-states in one table, updates in set-based SQL, writes one audit row per record,
and enqueues notifications after the commit. Views, API endpoints, CLI commands and jobs all
call the same functions.
"""
from app.workflow.errors import BatchResult, Refusal, WorkflowError  # noqa: F401
