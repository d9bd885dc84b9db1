"""exhibition areas (issue 12): zones (专区) under exhibition areas (展区)

The zone table already had parent_id: a row without a parent is now an exhibition area, and
units choose only the zones under one. Each zone of the earlier flat list gets an area of its
own (食品及农产品 → area 食品及农产品展区, the zone under it), so every unit's choices keep
pointing at the same rows and meaning; admins then rename, add zones and retire what they
no longer offer. No table changes.

Revision ID: c12b00000002
Revises: c12a00000001
Create Date: 2026-12-01 21:45:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'c12b00000002'
down_revision = 'c12a00000001'
branch_labels = None
depends_on = None

zone = sa.Table(
    "zone", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True), sa.Column("parent_id", sa.Integer),
    sa.Column("name_zh", sa.String), sa.Column("name_en", sa.String),
    sa.Column("sort", sa.Integer), sa.Column("active", sa.Boolean),
)


def _area_names(name_zh: str, name_en: str) -> tuple[str, str]:
    zh = name_zh if name_zh.endswith("展区") else f"{name_zh}展区"
    en = name_en if "exhibition area" in name_en.lower() else f"{name_en} Exhibition Area"
    return zh[:200], en[:200]


def upgrade():
    conn = op.get_bind()
    child = zone.alias("child")
    # The flat list: rows without a parent that no row names as its parent.
    flat = conn.execute(
        sa.select(zone.c.id, zone.c.name_zh, zone.c.name_en, zone.c.sort, zone.c.active)
        .where(zone.c.parent_id.is_(None),
               ~sa.exists().where(child.c.parent_id == zone.c.id))
        .order_by(zone.c.id)).all()
    for row in flat:
        name_zh, name_en = _area_names(row.name_zh, row.name_en)
        area_id = conn.execute(zone.insert().values(
            parent_id=None, name_zh=name_zh, name_en=name_en, sort=row.sort,
            active=row.active)).inserted_primary_key[0]
        conn.execute(zone.update().where(zone.c.id == row.id).values(parent_id=area_id))


def downgrade():
    # The areas stay: the earlier code lists every active row flat, areas included, and the
    # units' choices still point at the same zones.
    pass
