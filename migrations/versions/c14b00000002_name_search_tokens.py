"""person name search tokens (issue 14)

Revision ID: c14b00000002
Revises: c14a00000001
Create Date: 2026-12-02 07:30:00.000000

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'c14b00000002'
down_revision = 'c14a00000001'
branch_labels = None
depends_on = None

# app.search_keys.name_tokens in SQL, for the names already stored (one UPDATE for 450,000
# persons): NFKC, lower case, words split at white space and middle dots, every character and
# every pair of adjacent characters of each word, distinct, in code point order (COLLATE "C").
# Written out rather than imported, so this step stays what it is if the tokens change later
# (that migration then recomputes them); tests/test_name_search.py checks the two agree.
NAME_TOKENS_SQL = r"""
ARRAY(
    SELECT DISTINCT substr(word, i, n) COLLATE "C"
    FROM regexp_split_to_table(lower(normalize({name}, NFKC)),
                               '[ \t\n\r\f\v\u00b7\u2022\u30fb]+') AS word,
         generate_series(1, char_length(word)) AS i,
         (VALUES (1), (2)) AS width (n)
    WHERE i + n - 1 <= char_length(word)
    ORDER BY 1)
"""
BACKFILL = "UPDATE person SET name_search = " + NAME_TOKENS_SQL.format(name="name")


def upgrade():
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    tokens = postgresql.ARRAY(sa.Text()) if postgres else sa.JSON()
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_search', tokens, nullable=True))
    if postgres:
        op.execute(BACKFILL)
    else:
        # The embedded SQLite database searches names with LIKE only; its tokens are kept
        # for the day it moves to PostgreSQL.
        from app.search_keys import name_tokens

        person = sa.table('person', sa.column('id', sa.Integer), sa.column('name', sa.String),
                          sa.column('name_search', sa.JSON))
        for row in bind.execute(sa.select(person.c.id, person.c.name)).all():
            bind.execute(person.update().where(person.c.id == row.id)
                         .values(name_search=name_tokens(row.name)))
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.create_index('ix_person_name_search', ['name_search'], unique=False,
                              postgresql_using='gin')


def downgrade():
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_index('ix_person_name_search')
        batch_op.drop_column('name_search')
