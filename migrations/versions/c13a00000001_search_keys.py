"""ID-number and mobile search keys (issue 13)

Revision ID: c13a00000001
Revises: c12e00000005
Create Date: 2026-12-02 01:30:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'c13a00000001'
down_revision = 'c12e00000005'
branch_labels = None
depends_on = None

# The keys of the numbers already stored, in SQL (one UPDATE for 450,000 persons): the
# workflow stored every ID number upper-case without spaces and every mobile in E.164, so
# app.search_keys gives exactly this for them: the ID number itself (separators dropped, as
# it is written), a mainland mobile without its +86, any other in E.164 as stored.
# Written out here rather than imported, so this step stays what it is when issue 17 turns
# the keys into keyed hashes (its migration recomputes them).
BACKFILL = """
UPDATE person SET
    id_search_key = upper(replace(replace(id_number, ' ', ''), '-', '')),
    mobile_search_key = CASE
        WHEN mobile IS NULL OR mobile = '' THEN NULL
        WHEN mobile LIKE '+86%' THEN substr(mobile, 4)
        ELSE mobile END
"""


def upgrade():
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id_search_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('mobile_search_key', sa.String(length=64),
                                      nullable=True))
    op.execute(BACKFILL)
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.create_index('ix_person_id_search_key', ['id_search_key'], unique=False)
        batch_op.create_index('ix_person_mobile_search_key', ['mobile_search_key'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_index('ix_person_mobile_search_key')
        batch_op.drop_index('ix_person_id_search_key')
        batch_op.drop_column('mobile_search_key')
        batch_op.drop_column('id_search_key')
