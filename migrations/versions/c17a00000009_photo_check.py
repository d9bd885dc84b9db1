"""Badge photo check (issue 17): each person keeps its photo's upload verdict and the figures
measured (faces, face size, brightness, background), so reviewers and lists show them without
detecting faces again

Revision ID: c17a00000009
Revises: c16a00000008
Create Date: 2026-12-02 13:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c17a00000009'
down_revision = 'c16a00000008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'photo_verdict',
            sa.Enum('passed', 'warning', 'refused', name='photo_verdict', native_enum=False,
                    create_constraint=True, length=32),
            nullable=True))
        batch_op.add_column(sa.Column('photo_check', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_column('photo_check')
        batch_op.drop_column('photo_verdict')
