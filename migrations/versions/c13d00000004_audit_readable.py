"""readable audit log (issue 13): indexes for its filters by actor and by action

Revision ID: c13d00000004
Revises: c13b00000002
Create Date: 2026-12-02 01:30:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c13d00000004'
down_revision = 'c13b00000002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_audit_event_actor", "audit_event", ["actor_id", "id"])
    op.create_index("ix_audit_event_action", "audit_event", ["action", "id"])


def downgrade():
    op.drop_index("ix_audit_event_action", table_name="audit_event")
    op.drop_index("ix_audit_event_actor", table_name="audit_event")
