"""Every table of the CIIE professional-visitor system, its enums and their translated labels.

Models hold data and the invariants SQL can hold (unique keys, checks, partial unique indexes);
the transitions between states live in `app.workflow`.
"""
from __future__ import annotations

import enum
from datetime import date, datetime, timedelta, timezone
from typing import Optional

import sqlalchemy as sa
from flask_appbuilder import Model
from flask_appbuilder.security.sqla.models import User as FabUser
from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, aliased, column_property, mapped_column, relationship, validates

from app.clock import now
from app.pii import ID_NUMBER, MOBILE, Sealed
from app.search_keys import name_tokens

metadata = Model.metadata
# Named constraints make Alembic's SQLite batch mode and error messages predictable. FAB's own
# tables are already defined (unnamed) when this runs; the convention applies to ours.
metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class AwareDateTime(sa.types.TypeDecorator):
    """A timezone-aware timestamp stored in UTC on every backend (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to an AwareDateTime column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    """The business clock's now (app.clock), the default of every timestamp column."""
    return now()


# --------------------------------------------------------------------------------------------
# Enums. Values are short English words; each member's label (translated by the catalogues)
# stands beside its value.
# --------------------------------------------------------------------------------------------


class LabelledEnum(str, enum.Enum):
    """A string enum whose members carry their translated label: `draft = "draft", _l("Draft")`
    (the value is the first item; `member.label` is the second)."""

    label: LazyString

    def __new__(cls, value: str, label: LazyString) -> "LabelledEnum":
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member

    def __str__(self) -> str:
        return self.value


class Region(LabelledEnum):
    domestic = "domestic", _l("Domestic")
    overseas = "overseas", _l("Overseas")


class UnitCategory(LabelledEnum):
    enterprise = "enterprise", _l("Enterprise")
    government_agency = "government_agency", _l("Government agency")
    public_institution = "public_institution", _l("Public institution")
    social_organisation = "social_organisation", _l("Social organisation")
    government_department = "government_department", _l("Government department")
    other = "other", _l("Other")


CATEGORIES_BY_REGION = {
    Region.domestic: (
        UnitCategory.enterprise,
        UnitCategory.government_agency,
        UnitCategory.public_institution,
        UnitCategory.social_organisation,
    ),
    Region.overseas: (
        UnitCategory.enterprise,
        UnitCategory.government_department,
        UnitCategory.social_organisation,
        UnitCategory.other,
    ),
}


class DelegationKind(LabelledEnum):
    local = "local", _l("Local delegation")
    central_soe = "central_soe", _l("Central SOE delegation")
    health_commission = "health_commission", _l("Health commission delegation")
    industry = "industry", _l("Industry delegation")


class UnitStatus(LabelledEnum):
    draft = "draft", _l("Draft")
    submitted = "submitted", _l("Submitted")
    approved = "approved", _l("Approved")
    returned = "returned", _l("Returned for changes")
    rejected = "rejected", _l("Rejected")


class PersonStatus(LabelledEnum):
    draft = "draft", _l("Draft")
    awaiting_unit = "awaiting_unit", _l("Awaiting unit approval")
    submitted = "submitted", _l("Submitted")
    awaiting_lock = "awaiting_lock", _l("Awaiting lock")
    awaiting_payment = "awaiting_payment", _l("Awaiting payment")
    in_order = "in_order", _l("In order")
    awaiting_review = "awaiting_review", _l("Awaiting security review")
    approved = "approved", _l("Review passed")
    rejected = "rejected", _l("Review failed")
    badge_issued = "badge_issued", _l("Badge issued")
    cancelled = "cancelled", _l("Cancelled")
    refunded = "refunded", _l("Refunded")


# Statuses in which a person is past the lock and must carry a tag.
TAGGED_PERSON_STATUSES = (
    PersonStatus.awaiting_lock,
    PersonStatus.awaiting_payment,
    PersonStatus.in_order,
    PersonStatus.awaiting_review,
    PersonStatus.approved,
    PersonStatus.badge_issued,
)


class Tag(LabelledEnum):
    visitor = "visitor", _l("Professional visitor")
    staff = "staff", _l("Staff")
    vip = "vip", _l("VIP")


class Gender(LabelledEnum):
    male = "male", _l("Male")
    female = "female", _l("Female")


class IdType(LabelledEnum):
    mainland_id = "mainland_id", _l("Mainland ID card")
    hk_macau_permit = "hk_macau_permit", _l("Hong Kong/Macau permit")
    taiwan_permit = "taiwan_permit", _l("Taiwan permit")
    passport = "passport", _l("Passport")
    foreign_permanent_id = "foreign_permanent_id", _l("Foreigner permanent residence ID")
    hmt_residence_permit = "hmt_residence_permit", _l(
        "Residence permit for Hong Kong, Macau and Taiwan residents")

    @property
    def usual_review_days(self) -> int:
        """The days a security check usually takes: 7 for a mainland ID card, 15 for other
        documents (overseas; a residence permit's holder is a Hong Kong, Macau or Taiwan
        resident, checked like the travel permits)."""
        return 7 if self is IdType.mainland_id else 15


class OrderStatus(LabelledEnum):
    pending = "pending", _l("Awaiting payment")
    paid = "paid", _l("Paid")
    cancelled = "cancelled", _l("Cancelled")


class PaymentChannel(LabelledEnum):
    alipay = "alipay", _l("Alipay")
    wechat = "wechat", _l("WeChat Pay")
    unionpay = "unionpay", _l("UnionPay")
    b2b = "b2b", _l("B2B gateway")
    transfer = "transfer", _l("Bank transfer")


QR_CHANNELS = (PaymentChannel.alipay, PaymentChannel.wechat, PaymentChannel.unionpay)


class PaymentStatus(LabelledEnum):
    created = "created", _l("Created")
    pending = "pending", _l("Pending")
    confirmed = "confirmed", _l("Confirmed")
    failed = "failed", _l("Failed")
    rejected = "rejected", _l("Rejected")
    # The unit withdrew its transfer declaration, or chose another way to pay online.
    withdrawn = "withdrawn", _l("Withdrawn")


# A payment attempt still open: at most one per order (a partial unique index holds it).
OPEN_PAYMENT_STATUSES = (PaymentStatus.created, PaymentStatus.pending)


class OverpaymentStatus(LabelledEnum):
    """Money that arrived for an order already paid (or cancelled), until it is returned."""

    received = "received", _l("Received, to be refunded")
    refund_sent = "refund_sent", _l("Refund sent")
    refunded = "refunded", _l("Refunded")
    refund_failed = "refund_failed", _l("Refund failed")


class OverpaymentCause(LabelledEnum):
    already_paid = "already_paid", _l("The order was already paid")
    order_cancelled = "order_cancelled", _l("The order was cancelled")


class InvoiceKind(LabelledEnum):
    e_normal = "e_normal", _l("Ordinary VAT e-invoice")
    paper_special = "paper_special", _l("Special VAT paper invoice")


# How lists, exports and the PDF name a red-letter reversal (红字发票) of an e-invoice.
RED_LETTER_LABEL = _l("Red-letter e-invoice")


class InvoiceStatus(LabelledEnum):
    requested = "requested", _l("Requested")
    issued = "issued", _l("Issued")
    mailed = "mailed", _l("Mailed")
    void_requested = "void_requested", _l("Voiding requested")
    voided = "voided", _l("Voided")
    rejected = "rejected", _l("Rejected")
    # The unit took its request back before it was issued (issue 12).
    withdrawn = "withdrawn", _l("Withdrawn")


ACTIVE_INVOICE_STATUSES = (
    InvoiceStatus.requested,
    InvoiceStatus.issued,
    InvoiceStatus.mailed,
    InvoiceStatus.void_requested,
)


class RefundStatus(LabelledEnum):
    requested = "requested", _l("Requested")
    approved = "approved", _l("Approved")
    sent = "sent", _l("Sent")
    done = "done", _l("Refunded")
    failed = "failed", _l("Failed")
    rejected = "rejected", _l("Rejected")


class RefundRoute(LabelledEnum):
    original = "original", _l("Original route")
    other_account = "other_account", _l("Another account")


class ReviewOutcome(LabelledEnum):
    passed = "passed", _l("Passed")
    failed = "failed", _l("Failed")


class ReviewReason(LabelledEnum):
    identity_mismatch = "identity_mismatch", _l("Identity does not match")
    invalid_document = "invalid_document", _l("Invalid ID document")
    invalid_photo = "invalid_photo", _l("Invalid photo")
    security_concern = "security_concern", _l("Security concern")
    duplicate = "duplicate", _l("Duplicate application")
    other = "other", _l("Other")


class PhotoVerdict(LabelledEnum):
    """The upload check of a badge photo (app/documents/photo_check.py); a refused photo is
    not stored."""

    passed = "passed", _l("Photo check passed")
    warning = "warning", _l("Photo check: warning")
    refused = "refused", _l("Photo refused")


class PhotoProblem(LabelledEnum):
    """What the photo check found wrong; only `background` is a warning, the rest refuse."""

    image_too_small = "image_too_small", _l("Picture too small")
    too_dark = "too_dark", _l("Too dark")
    no_face = "no_face", _l("No face")
    several_faces = "several_faces", _l("Several faces")
    face_too_small = "face_too_small", _l("Face too small")
    background = "background", _l("Background not plain and light")


class BadgeStatus(LabelledEnum):
    produced = "produced", _l("Produced")
    shipped = "shipped", _l("Shipped")
    delivered = "delivered", _l("Delivered")


class ShipmentStatus(LabelledEnum):
    packed = "packed", _l("Packed")
    shipped = "shipped", _l("Shipped")
    delivered = "delivered", _l("Delivered")


class EventStatus(LabelledEnum):
    draft = "draft", _l("Draft")
    published = "published", _l("Published")
    closed = "closed", _l("Closed")


class ApplicationStatus(LabelledEnum):
    applied = "applied", _l("Applied")
    accepted = "accepted", _l("Accepted")
    declined = "declined", _l("Declined")
    withdrawn = "withdrawn", _l("Withdrawn")


class NotificationChannel(LabelledEnum):
    sms = "sms", _l("SMS")
    email = "email", _l("E-mail")


class NotificationStatus(LabelledEnum):
    queued = "queued", _l("Queued")
    sent = "sent", _l("Sent")
    # The SMS provider reported the message on the phone (issue 15).
    delivered = "delivered", _l("Delivered to the phone")
    failed = "failed", _l("Failed")


class StatementLineStatus(LabelledEnum):
    unmatched = "unmatched", _l("Not matched")
    matched = "matched", _l("Matched")
    # Money for an order already paid: recorded as an overpayment for finance to refund.
    overpaid = "overpaid", _l("Overpayment, to refund")


class StatementMatchMethod(LabelledEnum):
    order_number = "order_number", _l("Order number in the memo")
    payer_amount = "payer_amount", _l("Payer and amount of a declared transfer")
    hand = "hand", _l("By hand")


class TaskStatus(LabelledEnum):
    queued = "queued", _l("Waiting to start")
    running = "running", _l("Running")
    done = "done", _l("Finished")
    failed = "failed", _l("Failed")


class ClaimStatus(LabelledEnum):
    """A request to register a known unit afresh, held until its delegation decides."""

    pending = "pending", _l("Awaiting the delegation")
    approved = "approved", _l("Approved")
    rejected = "rejected", _l("Rejected")
    withdrawn = "withdrawn", _l("Withdrawn")


class ScanResult(LabelledEnum):
    valid = "valid", _l("Valid")
    not_today = "not_today", _l("Not an entry date")
    deactivated = "deactivated", _l("Badge deactivated")
    forged = "forged", _l("Forged code")
    unknown = "unknown", _l("Unknown badge")
    cancelled = "cancelled", _l("Person cancelled")




def enum_column(enum_cls: type[enum.Enum], name: str | None = None, **kwargs) -> Mapped:
    """A VARCHAR column with a CHECK constraint listing the enum's values (same on every DB).

    `name` names the constraint when one table has two columns of the same enum."""
    name = name or "".join(
        "_" + c.lower() if c.isupper() else c for c in enum_cls.__name__).lstrip("_")
    return mapped_column(
        sa.Enum(
            enum_cls,
            name=name,
            native_enum=False,
            create_constraint=True,
            length=32,
            values_callable=lambda e: [m.value for m in e],
            validate_strings=True,
        ),
        **kwargs,
    )


def money_column(**kwargs) -> Mapped[int]:
    """Money is integer fen (1 yuan = 100 fen); never a float."""
    return mapped_column(sa.BigInteger, **kwargs)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        AwareDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


# --------------------------------------------------------------------------------------------
# Reference data: editions, delegations, taxonomy, partners
# --------------------------------------------------------------------------------------------


class Edition(Model):
    """One expo: its exhibition days, badge fee and deadlines (all Asia/Shanghai)."""

    __tablename__ = "edition"
    __table_args__ = (
        sa.CheckConstraint("end_date >= start_date", name="dates_ordered"),
        sa.CheckConstraint("badge_fee_fen >= 0", name="fee_not_negative"),
        sa.CheckConstraint("number > 0", name="number_positive"),
        sa.Index("uq_edition_current", "is_current", unique=True,
                 sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(sa.Integer, unique=True, nullable=False)
    start_date: Mapped[date] = mapped_column(sa.Date, nullable=False)
    end_date: Mapped[date] = mapped_column(sa.Date, nullable=False)
    badge_fee_fen: Mapped[int] = money_column(nullable=False)
    delegation_deadline: Mapped[datetime] = mapped_column(AwareDateTime, nullable=False)
    transfer_deadline: Mapped[datetime] = mapped_column(AwareDateTime, nullable=False)
    online_pay_deadline: Mapped[datetime] = mapped_column(AwareDateTime, nullable=False)
    is_current: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)

    @property
    def days(self) -> list[date]:
        return [self.start_date + timedelta(days=i)
                for i in range((self.end_date - self.start_date).days + 1)]

    def days_to_mask(self, days: list[date]) -> int:
        mask = 0
        for d in days:
            mask |= 1 << (d - self.start_date).days
        return mask

    def mask_to_days(self, mask: int) -> list[date]:
        return [d for i, d in enumerate(self.days) if mask & (1 << i)]

    def __repr__(self) -> str:
        return str(_l("CIIE %(number)s", number=self.number))


class Delegation(Model):
    """A trading delegation, or (with a parent) one of its sub-delegations."""

    __tablename__ = "delegation"
    __table_args__ = (
        sa.CheckConstraint(
            "kind = 'industry' OR rollup_delegation_id IS NULL", name="rollup_only_industry"
        ),
        sa.CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    name_zh: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    name_en: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    kind: Mapped[DelegationKind] = enum_column(DelegationKind, nullable=False)
    parent_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("delegation.id"), index=True)
    # An industry delegation manages its units but they are counted under this delegation.
    rollup_delegation_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("delegation.id"), index=True
    )
    region: Mapped[Region] = enum_column(Region, default=Region.domestic, nullable=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, nullable=False)

    parent: Mapped[Optional["Delegation"]] = relationship(
        remote_side=[id], foreign_keys=[parent_id], back_populates="children"
    )
    children: Mapped[list["Delegation"]] = relationship(
        foreign_keys=[parent_id], back_populates="parent"
    )
    rollup_delegation: Mapped[Optional["Delegation"]] = relationship(
        remote_side=[id], foreign_keys=[rollup_delegation_id]
    )

    @property
    def name(self) -> str:
        from app.i18n import pick

        return pick(self.name_zh, self.name_en)

    def __repr__(self) -> str:
        return self.name


class DelegationExtension(Model):
    """An admin's extension of the delegation deadline for one delegation."""

    __tablename__ = "delegation_extension"
    __table_args__ = (sa.UniqueConstraint("edition_id", "delegation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    delegation_id: Mapped[int] = mapped_column(sa.ForeignKey("delegation.id"), nullable=False)
    until: Mapped[datetime] = mapped_column(AwareDateTime, nullable=False)
    reason: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    granted_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))
    granted_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)

    edition: Mapped[Edition] = relationship()
    delegation: Mapped[Delegation] = relationship()


class Zone(Model):
    """The exhibition areas (展区) and their zones (专区) as the expo publishes them, kept by
    admins in zh and en: a row without a parent is an area, a row under an area is a zone.
    Units choose zones (`choosable`), never an area; a deactivated area takes its zones off
    the form. Deleting a row others depend on is refused by its foreign keys: deactivate it."""

    __tablename__ = "zone"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("zone.id"))
    name_zh: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    name_en: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    sort: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, nullable=False)

    parent: Mapped[Optional["Zone"]] = relationship(remote_side=[id])

    @property
    def name(self) -> str:
        from app.i18n import pick

        return pick(self.name_zh, self.name_en)

    @classmethod
    def choosable(cls) -> sa.Select:
        """The zones a unit may choose: active, under an active exhibition area."""
        area = aliased(cls)
        return (sa.select(cls).join(area, area.id == cls.parent_id)
                .where(cls.active.is_(True), area.active.is_(True), area.parent_id.is_(None)))

    def __repr__(self) -> str:
        return self.name


def zones_by_area(zones: list[Zone]) -> list[tuple[Zone, list[Zone]]]:
    """Chosen zones grouped under their exhibition areas, both in the admins' order."""
    def order(zone: Zone) -> tuple[int, int]:
        return zone.sort, zone.id

    groups: dict[Zone, list[Zone]] = {}
    for zone in sorted(zones, key=order):
        groups.setdefault(zone.parent or zone, []).append(zone)
    return sorted(groups.items(), key=lambda group: order(group[0]))


class ReferralCode(Model):
    """A code that an inviting partner (incl. regional partners) hands to the units it invites."""

    __tablename__ = "referral_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    partner_name_zh: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    partner_name_en: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    regional: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)

    def __repr__(self) -> str:
        return self.code


class Organiser(Model):
    """An organisation that publishes supporting events (配套活动)."""

    __tablename__ = "organiser"

    id: Mapped[int] = mapped_column(primary_key=True)
    name_zh: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    name_en: Mapped[str] = mapped_column(sa.String(200), nullable=False)

    @property
    def name(self) -> str:
        from app.i18n import pick

        return pick(self.name_zh, self.name_en)

    def __repr__(self) -> str:
        return self.name


# --------------------------------------------------------------------------------------------
# Units and their registrations
# --------------------------------------------------------------------------------------------


class Unit(TimestampMixin, Model):
    """A registering organisation. Its login is its USCC (overseas units get a generated one)."""

    __tablename__ = "unit"
    __table_args__ = (
        sa.CheckConstraint(
            "region = 'overseas' OR uscc IS NOT NULL", name="domestic_has_uscc"
        ),
        sa.CheckConstraint(
            "(region = 'domestic' AND category IN ('enterprise', 'government_agency', "
            "'public_institution', 'social_organisation')) OR (region = 'overseas' AND "
            "category IN ('enterprise', 'government_department', 'social_organisation', "
            "'other'))",
            name="category_fits_region",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    uscc: Mapped[Optional[str]] = mapped_column(sa.String(18), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    name_en: Mapped[Optional[str]] = mapped_column(sa.String(200))
    region: Mapped[Region] = enum_column(Region, nullable=False)
    category: Mapped[UnitCategory] = enum_column(UnitCategory, nullable=False)
    country: Mapped[Optional[str]] = mapped_column(sa.String(2))
    address: Mapped[Optional[str]] = mapped_column(sa.String(300))
    # Contact on file: where returning-unit verification codes and notices are sent.
    mobile: Mapped[Optional[str]] = mapped_column(Sealed(MOBILE))
    email: Mapped[Optional[str]] = mapped_column(sa.String(254))
    language: Mapped[str] = mapped_column(sa.String(5), default="zh", nullable=False)

    def __repr__(self) -> str:
        return self.name


class UnitRegistration(TimestampMixin, Model):
    """A unit's registration for one edition: the record delegations review."""

    __tablename__ = "unit_registration"
    __table_args__ = (
        sa.UniqueConstraint("edition_id", "unit_id"),
        sa.CheckConstraint(
            "status <> 'approved' OR unit_number IS NOT NULL", name="approved_has_number"
        ),
        sa.Index("ix_unit_registration_scope", "edition_id", "delegation_id", "status"),
        sa.Index("ix_unit_registration_sub", "edition_id", "sub_delegation_id", "status"),
        # A delegation's scope spans editions: its registrations by delegation alone.
        sa.Index("ix_unit_registration_delegation", "delegation_id"),
        sa.Index("ix_unit_registration_sub_delegation", "sub_delegation_id"),
        # What a person registration's copies of the delegations refer to (below).
        sa.UniqueConstraint("id", "delegation_id"),
        sa.UniqueConstraint("id", "sub_delegation_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False, index=True)
    status: Mapped[UnitStatus] = enum_column(UnitStatus, default=UnitStatus.draft, nullable=False)
    unit_number: Mapped[Optional[str]] = mapped_column(sa.String(16), unique=True)
    delegation_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("delegation.id"))
    sub_delegation_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("delegation.id"))
    referral_code_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("referral_code.id"))
    previous_registration_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("unit_registration.id")
    )
    is_returning: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)
    # Registered afresh after failing every returning-unit check: earlier editions stay hidden
    # from the unit (its earlier badge-fee orders show again once the delegation approves it).
    history_hidden: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False,
                                                 server_default=sa.false())
    contact_name: Mapped[Optional[str]] = mapped_column(sa.String(100))
    contact_title: Mapped[Optional[str]] = mapped_column(sa.String(100))
    contact_mobile: Mapped[Optional[str]] = mapped_column(Sealed(MOBILE))
    contact_email: Mapped[Optional[str]] = mapped_column(sa.String(254))
    purchase_intentions: Mapped[Optional[str]] = mapped_column(sa.Text)
    reason: Mapped[Optional[str]] = mapped_column(sa.Text)
    # The autosaved form: saved even when it would not pass validation; submission validates.
    draft_data: Mapped[Optional[dict]] = mapped_column(sa.JSON)
    draft_saved_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    submitted_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    reviewed_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    review_reason: Mapped[Optional[str]] = mapped_column(sa.String(1000))

    edition: Mapped[Edition] = relationship()
    unit: Mapped[Unit] = relationship()
    delegation: Mapped[Optional[Delegation]] = relationship(foreign_keys=[delegation_id])
    sub_delegation: Mapped[Optional[Delegation]] = relationship(foreign_keys=[sub_delegation_id])
    referral_code: Mapped[Optional[ReferralCode]] = relationship()
    zones: Mapped[list[Zone]] = relationship(secondary="unit_registration_zone")
    documents: Mapped[list["UnitDocument"]] = relationship(back_populates="registration")

    def __repr__(self) -> str:
        return self.unit_number or f"#{self.id}"


# Search columns for review queues: the unit's name, code, category and region, read from the
# unit row (deferred: loaded only when a filter or a page asks for them).
UnitRegistration.unit_name = column_property(
    sa.select(Unit.name).where(Unit.id == UnitRegistration.unit_id).scalar_subquery(),
    deferred=True)
UnitRegistration.unit_uscc = column_property(
    sa.select(Unit.login).where(Unit.id == UnitRegistration.unit_id).scalar_subquery(),
    deferred=True)
UnitRegistration.unit_category = column_property(
    sa.select(Unit.category).where(Unit.id == UnitRegistration.unit_id).scalar_subquery(),
    deferred=True)
UnitRegistration.unit_region = column_property(
    sa.select(Unit.region).where(Unit.id == UnitRegistration.unit_id).scalar_subquery(),
    deferred=True)


unit_registration_zone = sa.Table(
    "unit_registration_zone",
    metadata,
    sa.Column("unit_registration_id", sa.ForeignKey("unit_registration.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("zone_id", sa.ForeignKey("zone.id"), primary_key=True),
)


class AccountClaim(Model):
    """"Register afresh" after every returning-unit check failed: a request to take over a known
    unit's account. Nothing of the account changes until the delegation the claimant chose has
    confirmed who is asking (docs/account-claims.md); the password is kept as a hash."""

    __tablename__ = "account_claim"
    __table_args__ = (
        # One claim waits at a time: a second attempt is told one is already with the delegation.
        sa.Index("uq_account_claim_one_pending", "unit_id", unique=True,
                 sqlite_where=sa.text("status = 'pending'"),
                 postgresql_where=sa.text("status = 'pending'")),
        sa.Index("ix_account_claim_scope", "delegation_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False, index=True)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    status: Mapped[ClaimStatus] = enum_column(ClaimStatus, default=ClaimStatus.pending,
                                              nullable=False)
    # What the claimant entered; applied to the unit only when the claim is approved.
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    name_en: Mapped[Optional[str]] = mapped_column(sa.String(200))
    region: Mapped[Region] = enum_column(Region, nullable=False)
    category: Mapped[UnitCategory] = enum_column(UnitCategory, nullable=False)
    delegation_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("delegation.id"))
    sub_delegation_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("delegation.id"))
    referral_code_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("referral_code.id"))
    mobile: Mapped[str] = mapped_column(Sealed(MOBILE), nullable=False)
    email: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    password_hash: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    language: Mapped[str] = mapped_column(sa.String(5), default="zh", nullable=False)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    decided_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    decided_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))
    reason: Mapped[Optional[str]] = mapped_column(sa.String(1000))

    unit: Mapped[Unit] = relationship()
    edition: Mapped[Edition] = relationship()
    delegation: Mapped[Optional[Delegation]] = relationship(foreign_keys=[delegation_id])
    sub_delegation: Mapped[Optional[Delegation]] = relationship(foreign_keys=[sub_delegation_id])
    referral_code: Mapped[Optional[ReferralCode]] = relationship()

    def __repr__(self) -> str:
        return f"#{self.id}"


class UnitDocument(Model):
    """A qualification document (PDF/JPEG/PNG) uploaded by a unit; stored outside static/."""

    __tablename__ = "unit_document"
    __table_args__ = (sa.CheckConstraint("size_bytes > 0", name="size_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    registration_id: Mapped[int] = mapped_column(
        sa.ForeignKey("unit_registration.id"), nullable=False, index=True
    )
    storage_key: Mapped[str] = mapped_column(sa.String(200), unique=True, nullable=False)
    original_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    uploaded_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)

    registration: Mapped[UnitRegistration] = relationship(back_populates="documents")

    def __repr__(self) -> str:
        return self.original_name


class Address(Model):
    """A badge delivery address: at most five per unit (slots 1-5), exactly one default."""

    __tablename__ = "address"
    __table_args__ = (
        sa.UniqueConstraint("unit_id", "slot"),
        sa.CheckConstraint("slot BETWEEN 1 AND 5", name="at_most_five"),
        sa.Index("uq_address_one_default", "unit_id", unique=True,
                 sqlite_where=sa.text("is_default"), postgresql_where=sa.text("is_default")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False)
    slot: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    recipient: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    phone: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    province: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    city: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    detail: Mapped[str] = mapped_column(sa.String(300), nullable=False)
    postcode: Mapped[Optional[str]] = mapped_column(sa.String(10))
    is_default: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)

    unit: Mapped[Unit] = relationship()

    def __repr__(self) -> str:
        return f"{self.province}{self.city}{self.detail} {self.recipient}"


# --------------------------------------------------------------------------------------------
# Persons
# --------------------------------------------------------------------------------------------


class Person(TimestampMixin, Model):
    """A badge applicant of a unit; carried forward from edition to edition."""

    __tablename__ = "person"
    __table_args__ = (
        # The number is sealed (app.pii): its keyed hash holds the uniqueness.
        sa.UniqueConstraint("unit_id", "id_type", "id_search_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False)
    # Set when the person registered through the mobile app / mini-program.
    user_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    gender: Mapped[Gender] = enum_column(Gender, nullable=False)
    id_type: Mapped[IdType] = enum_column(IdType, nullable=False)
    id_number: Mapped[str] = mapped_column(Sealed(ID_NUMBER), nullable=False)
    nationality: Mapped[str] = mapped_column(sa.String(2), default="CN", nullable=False)
    mobile: Mapped[Optional[str]] = mapped_column(Sealed(MOBILE))
    email: Mapped[Optional[str]] = mapped_column(sa.String(254))
    job_title: Mapped[Optional[str]] = mapped_column(sa.String(100))
    photo_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    thumb_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    # The photo's upload check (app/documents/photo_check.py), kept so lists and reviewers show
    # it without detecting faces again: the verdict, and the figures measured with the
    # problems found ({"faces": 1, "face_ratio": 0.36, "problems": ["background"], …}).
    # Empty for a photo stored before the check existed.
    photo_verdict: Mapped[Optional[PhotoVerdict]] = enum_column(PhotoVerdict)
    photo_check: Mapped[Optional[dict]] = mapped_column(sa.JSON)
    # The numbers are sealed at rest (app.pii: AES-GCM, the key's id beside the ciphertext);
    # their search keys (app.search_keys: keyed hashes of the normalised numbers), written with
    # the numbers by the workflow, make the lists' exact searches an index lookup, whatever
    # was typed, and hold the unit's uniqueness above.
    id_search_key: Mapped[Optional[str]] = mapped_column(sa.String(64), index=True)
    mobile_search_key: Mapped[Optional[str]] = mapped_column(sa.String(64), index=True)
    # The name's search tokens (app.search_keys.name_tokens), copied onto the person's
    # registrations, where the lists search them (PersonRegistration.name_search). Set with the
    # name by every ORM write; set-based writers compute it themselves.
    name_search: Mapped[Optional[list[str]]] = mapped_column(
        sa.JSON().with_variant(postgresql.ARRAY(sa.Text()), "postgresql"))

    unit: Mapped[Unit] = relationship()

    @validates("name")
    def _tokens_with_name(self, _key: str, name: str) -> str:
        self.name_search = name_tokens(name)
        return name

    def __repr__(self) -> str:
        return self.name


class PersonImport(Model):
    """One spreadsheet of persons a unit imported (issue 16), written when it is applied: the
    file (name and SHA-256, so the same file again is recognised), what became of its rows,
    who and when, and the refused rows' workbook to fix and upload again."""

    __tablename__ = "person_import"
    __table_args__ = (
        sa.Index("ix_person_import_unit_hash", "unit_id", "file_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    file_name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    file_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    # The background task that applied it (its page has the report), if it ran as one.
    task_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("background_task.id"))
    rows_read: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    added: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    updated: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    unchanged: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    refused: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    # The unit ticked "submit": how many of the imported persons were submitted.
    submit: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)
    submitted: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    refused_file_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    imported_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    imported_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))

    imported_by: Mapped[Optional["CiieUser"]] = relationship()

    def __repr__(self) -> str:
        return self.file_name


class LockBatch(Model):
    """One 'lock and submit' by a delegation user: the unit notices are keyed on it."""

    __tablename__ = "lock_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    delegation_id: Mapped[int] = mapped_column(sa.ForeignKey("delegation.id"), nullable=False)
    locked_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))
    locked_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    person_count: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)


class PersonRegistration(TimestampMixin, Model):
    """A person's application for a badge in one edition."""

    __tablename__ = "person_registration"
    __table_args__ = (
        sa.UniqueConstraint("edition_id", "person_id"),
        # The same ID document cannot be entered twice in one edition, whatever the unit.
        sa.UniqueConstraint("edition_id", "id_key"),
        sa.CheckConstraint("entry_days >= 0", name="entry_days_not_negative"),
        sa.CheckConstraint(
            "tag IS NOT NULL OR status NOT IN (%s)"
            % ", ".join(f"'{status.value}'" for status in TAGGED_PERSON_STATUSES),
            name="tagged_after_lock",
        ),
        sa.CheckConstraint(
            "NOT is_reuse OR (previous_badge_id IS NOT NULL AND previous_tag IS NOT NULL)",
            name="reuse_has_previous_badge",
        ),
        sa.Index("ix_person_registration_unit_status", "unit_registration_id", "status"),
        # The security-review queue: a status, longest waiting first (no sort of 90,000 rows).
        sa.Index("ix_person_registration_queue", "edition_id", "status", "status_changed_at",
                 "id"),
        # The unit registration's delegations, copied so that a delegation's persons list, its
        # bounded count and its statistics read one index range, not a join (issue 14). The
        # database holds the copies equal: a mismatch is refused, and a unit moved from one
        # delegation to another takes its persons along (ON UPDATE CASCADE). Only a copy left
        # empty escapes the key (SQL skips a foreign key with a NULL in it): the listeners
        # below fill the copies on insert and on a change of the unit's delegation.
        sa.ForeignKeyConstraint(
            ["unit_registration_id", "delegation_id"],
            ["unit_registration.id", "unit_registration.delegation_id"],
            name="fk_person_registration_unit_delegation", onupdate="CASCADE"),
        sa.ForeignKeyConstraint(
            ["unit_registration_id", "sub_delegation_id"],
            ["unit_registration.id", "unit_registration.sub_delegation_id"],
            name="fk_person_registration_unit_sub_delegation", onupdate="CASCADE"),
        # Scope, then status and tag (the list's filters), with what the count and the
        # statistics read: index-only scans (EXPLAIN in the issue-14 report).
        sa.Index("ix_person_registration_delegation", "delegation_id", "edition_id", "status",
                 "tag", "sub_delegation_id", "id"),
        sa.Index("ix_person_registration_sub_delegation", "sub_delegation_id", "edition_id",
                 "status", "tag", "id"),
        # The person's name tokens, copied: with the delegation beside them in one GIN index
        # (btree_gin), a delegation's name search is one bitmap. A one-character surname counts
        # its first 2,001 of Shanghai's 106,264 persons in a few milliseconds, where joining the
        # person's own tokens read all 106,264 (EXPLAIN in bench/README.md). The edition is left
        # out: every row of the current edition is in its entry, which doubled the scan's time.
        sa.Index("ix_person_registration_name_search", "delegation_id", "name_search",
                 postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("person.id"), nullable=False, index=True)
    unit_registration_id: Mapped[int] = mapped_column(
        sa.ForeignKey("unit_registration.id"), nullable=False
    )
    # Always the unit registration's, empty where the unit's are. The composite keys above
    # make each a delegation too (the unit registration's refers to one): a key of its own to
    # delegation would check every insert twice over.
    delegation_id: Mapped[Optional[int]] = mapped_column(sa.Integer)
    sub_delegation_id: Mapped[Optional[int]] = mapped_column(sa.Integer)
    # Always the person's Person.name_search, whoever writes (the ORM, an import's Core
    # INSERTs, COPY): two triggers of migration c14d0000000b copy it on insert and when the
    # person's tokens change. A composite key to person, as for the delegations, would make
    # every join of the two tables ambiguous. PostgreSQL only (SQLite's searches compare the
    # names, its copies stay empty). Searched, never shown: not loaded with the row.
    name_search: Mapped[Optional[list[str]]] = mapped_column(
        sa.JSON().with_variant(postgresql.ARRAY(sa.Text()), "postgresql"), deferred=True)
    # The keyed hash of the person's id_type:id_number (app.workflow.persons.id_key), kept
    # here so SQL can hold the per-edition uniqueness without the number itself.
    id_key: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    status: Mapped[PersonStatus] = enum_column(
        PersonStatus, default=PersonStatus.draft, nullable=False
    )
    tag: Mapped[Optional[Tag]] = enum_column(Tag)
    # Entry dates as a bit mask over the edition's days (bit 0 = first exhibition day).
    entry_days: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    is_reuse: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)
    previous_badge_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("badge.id"))
    previous_tag: Mapped[Optional[Tag]] = enum_column(Tag, name="previous_tag")
    # Indexed: a lock's notices read its persons by batch (not a scan of every registration).
    lock_batch_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("lock_batch.id"),
                                                         index=True)
    # The badge valid for this edition: a new one, or the previous one re-activated.
    badge_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("badge.id"))
    submitted_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    status_changed_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)

    edition: Mapped[Edition] = relationship()
    person: Mapped[Person] = relationship()
    unit_registration: Mapped[UnitRegistration] = relationship(
        foreign_keys=[unit_registration_id],
        primaryjoin=lambda: UnitRegistration.id == PersonRegistration.unit_registration_id)
    previous_badge: Mapped[Optional["Badge"]] = relationship(foreign_keys=[previous_badge_id])
    badge: Mapped[Optional["Badge"]] = relationship(foreign_keys=[badge_id])

    @property
    def entry_dates(self) -> list[date]:
        return self.edition.mask_to_days(self.entry_days)

    # "search_tokens" names this row's column holding the name's tokens, which a name search
    # narrows by first (scoping.interface).
    person_name = column_property(
        sa.select(Person.name).where(Person.id == person_id).scalar_subquery(), deferred=True,
        info={"search_tokens": "name_search"})
    unit_name = column_property(
        sa.select(Unit.name).join(UnitRegistration, UnitRegistration.unit_id == Unit.id)
        .where(UnitRegistration.id == unit_registration_id).scalar_subquery(), deferred=True)
    # The unit's delegation and sub-delegation, for the persons' search filters (statistics
    # link to them by these names); "references" makes the filter a choice of delegations, by
    # equality. They read the copies on this row (an index range); type_coerce renders the
    # bare column under a second name (a synonym would not be a column to FAB's filters).
    unit_delegation_id = column_property(
        sa.type_coerce(delegation_id.column, sa.Integer),
        deferred=True, info={"references": "delegation"})
    unit_sub_delegation_id = column_property(
        sa.type_coerce(sub_delegation_id.column, sa.Integer),
        deferred=True, info={"references": "delegation"})
    unit_region = column_property(
        sa.select(Unit.region).join(UnitRegistration, UnitRegistration.unit_id == Unit.id)
        .where(UnitRegistration.id == unit_registration_id).scalar_subquery(), deferred=True)
    delegation_name = column_property(
        sa.select(Delegation.name_zh)
        .join(UnitRegistration, UnitRegistration.delegation_id == Delegation.id)
        .where(UnitRegistration.id == unit_registration_id).scalar_subquery(), deferred=True)
    # Search-only: the person's number keys, searched for the key of the typed number
    # ("search_key" names its kind; app.scoping.interface.FilterSearchKey).
    person_id_search = column_property(
        sa.select(Person.id_search_key).where(Person.id == person_id).scalar_subquery(),
        deferred=True, info={"search_key": "id_number"})
    person_mobile_search = column_property(
        sa.select(Person.mobile_search_key).where(Person.id == person_id).scalar_subquery(),
        deferred=True, info={"search_key": "mobile"})

    @property
    def waiting(self) -> tuple[int, int] | None:
        """(days waited in this status, days a security check usually takes for the
        person's ID document: IdType.usual_review_days)."""
        if self.status_changed_at is None or self.person is None:
            return None
        return (now() - self.status_changed_at).days, self.person.id_type.usual_review_days

    @property
    def photo(self) -> int | None:
        """The person's id when a photo exists (views turn it into the scoped image URL)."""
        return self.person_id if self.person is not None and self.person.thumb_key else None

    @property
    def photo_result(self) -> tuple[PhotoVerdict | None, dict] | None:
        """The person's photo check as stored at upload (verdict, figures), when it has a
        photo; the person is joined in every list that shows it (no query per row)."""
        person = self.person
        if person is None or not person.thumb_key:
            return None
        return person.photo_verdict, person.photo_check or {}

    def __repr__(self) -> str:
        return self.person.name if self.person else f"#{self.id}"


@sa.event.listens_for(PersonRegistration, "before_insert")
def _copy_unit_delegations(mapper: object, connection: sa.Connection,
                           target: PersonRegistration) -> None:
    """Every way of adding a person (workflow, demo, tests) gets its unit's delegations: from
    the unit registration in the session when it is loaded (no query), else read by the INSERT
    itself. Whatever was set by hand gives way: the copies are the unit's by definition."""
    session = sa.orm.object_session(target)
    key = sa.orm.util.identity_key(UnitRegistration, target.unit_registration_id)
    unit_registration = session.identity_map.get(key) if session is not None else None
    if unit_registration is not None and {"delegation_id", "sub_delegation_id"} <= set(
            unit_registration.__dict__):
        target.delegation_id = unit_registration.delegation_id
        target.sub_delegation_id = unit_registration.sub_delegation_id
        return
    UR = UnitRegistration
    of_unit = UR.id == target.unit_registration_id
    target.delegation_id = sa.select(UR.delegation_id).where(of_unit).scalar_subquery()
    target.sub_delegation_id = sa.select(UR.sub_delegation_id).where(of_unit).scalar_subquery()


@sa.event.listens_for(UnitRegistration, "after_update")
def _move_persons_along(mapper: object, connection: sa.Connection,
                        target: UnitRegistration) -> None:
    """A unit registration given another delegation or sub-delegation takes its persons along,
    all in one UPDATE in the same transaction. The foreign keys cascade a change from one
    delegation to another by themselves, but not one from or to none (SQL skips a key with a
    NULL in it): this covers those."""
    state = sa.inspect(target)
    if not (state.attrs.delegation_id.history.has_changes()
            or state.attrs.sub_delegation_id.history.has_changes()):
        return
    PR = PersonRegistration
    connection.execute(sa.update(PR).where(
        PR.unit_registration_id == target.id,
        sa.or_(PR.delegation_id.is_distinct_from(target.delegation_id),
               PR.sub_delegation_id.is_distinct_from(target.sub_delegation_id)))
        .values(delegation_id=target.delegation_id, sub_delegation_id=target.sub_delegation_id))


# --------------------------------------------------------------------------------------------
# Orders, payments, invoices, refunds
# --------------------------------------------------------------------------------------------


class Order(TimestampMixin, Model):
    """A badge-fee order: fee × persons, paid once."""

    __tablename__ = "badge_order"
    __table_args__ = (
        sa.CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        sa.CheckConstraint("fee_fen >= 0", name="fee_not_negative"),
        sa.Index("ix_badge_order_unit_status", "unit_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(24), unique=True, nullable=False)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False)
    status: Mapped[OrderStatus] = enum_column(
        OrderStatus, default=OrderStatus.pending, nullable=False
    )
    fee_fen: Mapped[int] = money_column(nullable=False)
    amount_fen: Mapped[int] = money_column(nullable=False)
    paid_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    cancelled_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)

    edition: Mapped[Edition] = relationship()
    unit: Mapped[Unit] = relationship()
    items: Mapped[list["OrderItem"]] = relationship(back_populates="order")

    def __repr__(self) -> str:
        return self.number


class OrderItem(Model):
    """One person in an order. A person is in at most one active (pending or paid) order."""

    __tablename__ = "order_item"
    __table_args__ = (
        sa.CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        sa.Index("uq_order_item_one_active", "person_registration_id", unique=True,
                 sqlite_where=sa.text("active"), postgresql_where=sa.text("active")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("badge_order.id"), nullable=False,
                                          index=True)
    person_registration_id: Mapped[int] = mapped_column(
        sa.ForeignKey("person_registration.id"), nullable=False
    )
    amount_fen: Mapped[int] = money_column(nullable=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, nullable=False)

    order: Mapped[Order] = relationship(back_populates="items")
    person_registration: Mapped[PersonRegistration] = relationship()


class Payment(TimestampMixin, Model):
    """A payment attempt for an order: QR, B2B gateway or bank transfer."""

    __tablename__ = "payment"
    __table_args__ = (
        sa.CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        # Refunds are booked here, so SQL itself refuses refunding more than was paid.
        sa.CheckConstraint(
            "refunded_fen >= 0 AND refunded_fen <= amount_fen", name="refund_within_paid"
        ),
        sa.UniqueConstraint("channel", "provider_trade_no"),
        sa.Index("uq_payment_one_confirmed", "order_id", unique=True,
                 sqlite_where=sa.text("status = 'confirmed'"),
                 postgresql_where=sa.text("status = 'confirmed'")),
        # One open attempt per order: parallel declarations cannot both wait for finance.
        sa.Index("uq_payment_one_open", "order_id", unique=True,
                 sqlite_where=sa.text("status IN ('created', 'pending')"),
                 postgresql_where=sa.text("status IN ('created', 'pending')")),
        sa.Index("ix_payment_channel_status", "channel", "status"),
        # Each provider's last confirmed payment, for the operator (app/providers.py).
        sa.Index("ix_payment_channel_confirmed", "channel", "confirmed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("badge_order.id"), nullable=False,
                                          index=True)
    channel: Mapped[PaymentChannel] = enum_column(PaymentChannel, nullable=False)
    status: Mapped[PaymentStatus] = enum_column(
        PaymentStatus, default=PaymentStatus.created, nullable=False
    )
    amount_fen: Mapped[int] = money_column(nullable=False)
    refunded_fen: Mapped[int] = money_column(default=0, nullable=False)
    provider_trade_no: Mapped[Optional[str]] = mapped_column(sa.String(64))
    # The payer: for B2B and transfers it is the invoice buyer and cannot be changed.
    payer_name: Mapped[Optional[str]] = mapped_column(sa.String(200))
    payer_tax_id: Mapped[Optional[str]] = mapped_column(sa.String(20))
    payer_bank: Mapped[Optional[str]] = mapped_column(sa.String(200))
    payer_account: Mapped[Optional[str]] = mapped_column(sa.String(64))
    remitted_on: Mapped[Optional[date]] = mapped_column(sa.Date)
    voucher_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    reject_reason: Mapped[Optional[str]] = mapped_column(sa.String(500))
    confirmed_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)

    order: Mapped[Order] = relationship()

    @property
    def voucher(self) -> int | None:
        """The payment's id when a voucher was uploaded (views link it to the scoped file)."""
        return self.id if self.voucher_key else None

    def __repr__(self) -> str:
        return self.number


class Overpayment(TimestampMixin, Model):
    """Money that arrived for an order already paid or cancelled (a provider's notice for an
    attempt the unit gave up, a second QR payment, a bank line for a paid order): recorded
    once per (channel, reference) and queued to finance to refund. The attempt that received it
    stays withdrawn, so one confirmed payment per order still holds."""

    __tablename__ = "overpayment"
    __table_args__ = (
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
        # The same provider trade or bank line twice is one overpayment.
        sa.UniqueConstraint("channel", "reference"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Also the refund's idempotency key at the provider.
    number: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("badge_order.id"), nullable=False,
                                          index=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False, index=True)
    # The attempt the money was paid to (None for a bank line without a declaration).
    payment_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("payment.id"), index=True)
    channel: Mapped[PaymentChannel] = enum_column(PaymentChannel, nullable=False)
    cause: Mapped[OverpaymentCause] = enum_column(OverpaymentCause, nullable=False)
    status: Mapped[OverpaymentStatus] = enum_column(
        OverpaymentStatus, default=OverpaymentStatus.received, nullable=False)
    amount_fen: Mapped[int] = money_column(nullable=False)
    # The provider's trade number, or the bank statement line's reference.
    reference: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    payer_name: Mapped[Optional[str]] = mapped_column(sa.String(200))
    payer_account: Mapped[Optional[str]] = mapped_column(sa.String(64))
    # How it went back: the provider's refund id, or finance's bank transfer reference.
    refund_reference: Mapped[Optional[str]] = mapped_column(sa.String(200))
    refund_message: Mapped[Optional[str]] = mapped_column(sa.String(500))
    refunded_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)

    order: Mapped[Order] = relationship()
    unit: Mapped[Unit] = relationship()
    payment: Mapped[Optional[Payment]] = relationship()

    def __repr__(self) -> str:
        return self.number


class BankStatementLine(Model):
    """A credit line of an imported bank statement, matched to a transfer payment."""

    __tablename__ = "bank_statement_line"
    __table_args__ = (
        sa.UniqueConstraint("file_hash", "line_no"),
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The same file imported twice adds nothing: lines are keyed by the file's hash.
    file_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    line_no: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    booked_on: Mapped[date] = mapped_column(sa.Date, nullable=False)
    amount_fen: Mapped[int] = money_column(nullable=False)
    reference: Mapped[str] = mapped_column(sa.String(200), default="", nullable=False)
    payer_name: Mapped[Optional[str]] = mapped_column(sa.String(200))
    payer_account: Mapped[Optional[str]] = mapped_column(sa.String(64))
    status: Mapped[StatementLineStatus] = enum_column(
        StatementLineStatus, default=StatementLineStatus.unmatched, nullable=False)
    payment_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("payment.id"), unique=True)
    imported_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    imported_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))
    # A line is imported once, whatever file brings it again: keyed by the bank's serial number
    # (流水号) when the statement has one, else by its date, amount, payer account and memo.
    dedupe_key: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    serial: Mapped[Optional[str]] = mapped_column(sa.String(64))
    import_id: Mapped[Optional[int]] = mapped_column(
        sa.ForeignKey("bank_statement_import.id"), index=True)
    match_method: Mapped[Optional[StatementMatchMethod]] = enum_column(StatementMatchMethod)
    # The order the line paid (or overpaid).
    order_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("badge_order.id"), index=True)

    payment: Mapped[Optional[Payment]] = relationship()
    order: Mapped[Optional[Order]] = relationship()
    statement_import: Mapped[Optional["BankStatementImport"]] = relationship()


class BankStatementProfile(Model):
    """How one bank's statement export names its columns (admin-editable). Each header field
    lists the names that bank uses, separated by "|"; a statement's header row is the first
    row holding a date header and a credit (or amount) header of some profile."""

    __tablename__ = "bank_statement_profile"
    __table_args__ = (
        sa.CheckConstraint("credit_headers IS NOT NULL OR amount_headers IS NOT NULL",
                           name="credit_or_amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(16), unique=True, nullable=False)
    name_zh: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    name_en: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    date_headers: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    credit_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    debit_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    # Banks that print one amount column: its header, and the 借/贷 column and its credit marks
    # (without a direction column, a negative amount is a debit).
    amount_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    direction_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    credit_marks: Mapped[Optional[str]] = mapped_column(sa.String(200))
    payer_name_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    payer_account_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    memo_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    serial_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    balance_headers: Mapped[Optional[str]] = mapped_column(sa.String(500))
    date_formats: Mapped[str] = mapped_column(
        sa.String(200), default="%Y-%m-%d|%Y%m%d|%Y/%m/%d", nullable=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, nullable=False)

    def __repr__(self) -> str:
        from flask_babel import get_locale

        locale = get_locale()
        return self.name_en if locale is not None and locale.language == "en" else self.name_zh


class BankStatementImport(Model):
    """One imported statement file and its report: what was imported, matched (and how),
    left for matching by hand, skipped (row and reason) and already known."""

    __tablename__ = "bank_statement_import"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    file_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    profile_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("bank_statement_profile.id"))
    imported_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    imported_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))
    rows_read: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    imported: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    matched: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    unmatched: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    skipped: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    duplicates: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    # {"skipped": [[row, reason code, text]], "duplicates": [[row, line id]],
    #  "matched": [[row, line id, order number, method]], "unmatched": [[row, line id]]}
    report: Mapped[Optional[dict]] = mapped_column(sa.JSON)

    profile: Mapped[Optional[BankStatementProfile]] = relationship()
    imported_by: Mapped[Optional["CiieUser"]] = relationship()

    def __repr__(self) -> str:
        return self.file_name


class Invoice(TimestampMixin, Model):
    """A VAT invoice for a paid order. Never edited after issue: a reversal is a new record."""

    __tablename__ = "invoice"
    __table_args__ = (
        sa.CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        sa.Index(
            "uq_invoice_one_active", "order_id", unique=True,
            sqlite_where=sa.text("reversal_of_id IS NULL AND status IN "
                                 "('requested', 'issued', 'mailed', 'void_requested')"),
            postgresql_where=sa.text("reversal_of_id IS NULL AND status IN "
                                     "('requested', 'issued', 'mailed', 'void_requested')"),
        ),
        # One reversal per invoice; one the platform refused (rejected) leaves room for another.
        sa.Index("uq_invoice_one_reversal", "reversal_of_id", unique=True,
                 sqlite_where=sa.text("status != 'rejected'"),
                 postgresql_where=sa.text("status != 'rejected'")),
        # The last e-invoice issued and those requested, not issued yet (the sweeper's
        # outbox), for the operator (app/providers.py).
        sa.Index("ix_invoice_kind_issued", "kind", "issued_at"),
        sa.Index("ix_invoice_e_requested", "id",
                 sqlite_where=sa.text("kind = 'e_normal' AND status = 'requested'"),
                 postgresql_where=sa.text("kind = 'e_normal' AND status = 'requested'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("badge_order.id"), nullable=False,
                                          index=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False, index=True)
    kind: Mapped[InvoiceKind] = enum_column(InvoiceKind, nullable=False)
    status: Mapped[InvoiceStatus] = enum_column(
        InvoiceStatus, default=InvoiceStatus.requested, nullable=False
    )
    number: Mapped[Optional[str]] = mapped_column(sa.String(32), unique=True)
    amount_fen: Mapped[int] = money_column(nullable=False)
    buyer_name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    buyer_tax_id: Mapped[Optional[str]] = mapped_column(sa.String(20))
    buyer_address: Mapped[Optional[str]] = mapped_column(sa.String(300))
    buyer_phone: Mapped[Optional[str]] = mapped_column(sa.String(32))
    buyer_bank: Mapped[Optional[str]] = mapped_column(sa.String(200))
    buyer_account: Mapped[Optional[str]] = mapped_column(sa.String(64))
    buyer_locked: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)
    pdf_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    # An e-invoice is issued by the invoicing platform (app/gateways/einvoice/): which one
    # ("nuonuo"; "sandbox" for specimens), the order number we sent it (its orderNo, or the
    # red-letter form's billId), its serial (发票流水号) and the OFD and XML it issued beside
    # the PDF; `number` is the platform's invoice number.
    einvoice_platform: Mapped[Optional[str]] = mapped_column(sa.String(16))
    platform_order_no: Mapped[Optional[str]] = mapped_column(sa.String(32), unique=True)
    platform_serial: Mapped[Optional[str]] = mapped_column(sa.String(32))
    ofd_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    xml_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    carrier: Mapped[Optional[str]] = mapped_column(sa.String(50))
    tracking_no: Mapped[Optional[str]] = mapped_column(sa.String(64))
    reject_reason: Mapped[Optional[str]] = mapped_column(sa.String(500))
    issued_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    # A red-letter reversal points at the invoice it reverses.
    reversal_of_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("invoice.id"))

    order: Mapped[Order] = relationship()
    unit: Mapped[Unit] = relationship()
    reversal_of: Mapped[Optional["Invoice"]] = relationship(remote_side=[id])

    @property
    def logistics(self) -> int | None:
        """The invoice's id once it was mailed (views turn it into the "view logistics" link)."""
        return self.id if self.tracking_no else None

    @property
    def is_reversal(self) -> bool:
        return self.reversal_of_id is not None

    @property
    def files(self) -> "Invoice | None":
        """The invoice once it has its files (views turn it into the PDF, OFD and XML links)."""
        return self if self.pdf_key else None

    @property
    def invoice_type(self) -> LazyString:
        """What the invoice is, as lists print it: a red-letter reversal, or its kind."""
        return RED_LETTER_LABEL if self.is_reversal else self.kind.label

    def __repr__(self) -> str:
        return self.number or f"#{self.id}"


# What the invoice counts for, in fen: a red-letter reversal is the negative of the invoice
# it reverses (the row keeps the amount as printed, without sign; its PDF prints the minus).
Invoice.signed_amount_fen = column_property(
    sa.case((Invoice.reversal_of_id.is_not(None), -Invoice.amount_fen),
            else_=Invoice.amount_fen))


# The order's id while its unit may ask for an invoice (paid, no active invoice), else NULL:
# the unit's order list turns it into a "Request an invoice" link without a query per row.
Order.invoice_request_id = column_property(
    sa.case((sa.and_(
        Order.status == OrderStatus.paid,
        ~sa.exists().where(Invoice.order_id == Order.id, Invoice.reversal_of_id.is_(None),
                           Invoice.status.in_(ACTIVE_INVOICE_STATUSES)),
    ), Order.id), else_=None),
    deferred=True)


class Refund(TimestampMixin, Model):
    """Money going back to a unit for rejected or cancelled persons."""

    __tablename__ = "refund"
    __table_args__ = (
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The few refunds with a provider (sent, or failed there), for the operator.
        sa.Index("ix_refund_at_provider", "status",
                 sqlite_where=sa.text("status IN ('sent', 'failed')"),
                 postgresql_where=sa.text("status IN ('sent', 'failed')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Sent to the provider as the idempotency key of the refund.
    number: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    payment_id: Mapped[int] = mapped_column(sa.ForeignKey("payment.id"), nullable=False,
                                            index=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False, index=True)
    status: Mapped[RefundStatus] = enum_column(
        RefundStatus, default=RefundStatus.requested, nullable=False
    )
    amount_fen: Mapped[int] = money_column(nullable=False)
    route: Mapped[RefundRoute] = enum_column(RefundRoute, nullable=False)
    account_name: Mapped[Optional[str]] = mapped_column(sa.String(200))
    account_bank: Mapped[Optional[str]] = mapped_column(sa.String(200))
    account_no: Mapped[Optional[str]] = mapped_column(sa.String(64))
    provider_refund_id: Mapped[Optional[str]] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    reason: Mapped[Optional[str]] = mapped_column(sa.String(500))
    done_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)

    payment: Mapped[Payment] = relationship()
    unit: Mapped[Unit] = relationship()
    items: Mapped[list["RefundItem"]] = relationship(back_populates="refund")

    def __repr__(self) -> str:
        return self.number


class RefundItem(Model):
    """One person's fee in a refund; a person's fee is refunded at most once."""

    __tablename__ = "refund_item"
    __table_args__ = (
        sa.CheckConstraint("amount_fen > 0", name="amount_positive"),
        sa.Index("uq_refund_item_one_active", "order_item_id", unique=True,
                 sqlite_where=sa.text("active"), postgresql_where=sa.text("active")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    refund_id: Mapped[int] = mapped_column(sa.ForeignKey("refund.id"), nullable=False, index=True)
    order_item_id: Mapped[int] = mapped_column(sa.ForeignKey("order_item.id"), nullable=False)
    amount_fen: Mapped[int] = money_column(nullable=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, nullable=False)

    refund: Mapped[Refund] = relationship(back_populates="items")
    order_item: Mapped[OrderItem] = relationship()


# --------------------------------------------------------------------------------------------
# Security review, badges, delivery, gate
# --------------------------------------------------------------------------------------------


class ReviewDecision(Model):
    """A security reviewer's pass or fail of one person."""

    __tablename__ = "review_decision"
    __table_args__ = (
        sa.CheckConstraint(
            "outcome = 'passed' OR reason IS NOT NULL", name="failure_has_reason"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_registration_id: Mapped[int] = mapped_column(
        sa.ForeignKey("person_registration.id"), nullable=False, unique=True
    )
    reviewer_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))
    outcome: Mapped[ReviewOutcome] = enum_column(ReviewOutcome, nullable=False)
    reason: Mapped[Optional[ReviewReason]] = enum_column(ReviewReason)
    note: Mapped[Optional[str]] = mapped_column(sa.String(500))
    decided_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)

    person_registration: Mapped[PersonRegistration] = relationship()


class Shipment(Model):
    """A parcel of at most ten badges to one of the unit's saved addresses."""

    __tablename__ = "shipment"

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False, index=True)
    address_id: Mapped[int] = mapped_column(sa.ForeignKey("address.id"), nullable=False)
    status: Mapped[ShipmentStatus] = enum_column(
        ShipmentStatus, default=ShipmentStatus.packed, nullable=False
    )
    carrier: Mapped[Optional[str]] = mapped_column(sa.String(50))
    tracking_no: Mapped[Optional[str]] = mapped_column(sa.String(64))
    shipped_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)

    unit: Mapped[Unit] = relationship()
    address: Mapped[Address] = relationship()

    def __repr__(self) -> str:
        return f"#{self.id}"


_BADGE_TO_PACK = "shipment_id IS NULL AND status = 'produced' AND active"


class Badge(Model):
    """A physical badge. Reused badges are re-activated for a later edition."""

    __tablename__ = "badge"
    __table_args__ = (
        sa.UniqueConstraint("shipment_id", "parcel_slot"),
        sa.CheckConstraint("parcel_slot BETWEEN 1 AND 10", name="at_most_ten_per_parcel"),
        sa.CheckConstraint(
            "(shipment_id IS NULL) = (parcel_slot IS NULL)", name="slot_with_shipment"
        ),
        # The badge office's queues, counted on its home page at expo scale: badges waiting
        # for a parcel, and badges whose reprint was asked for.
        sa.Index("ix_badge_to_pack", "edition_id",
                 postgresql_where=sa.text(_BADGE_TO_PACK), sqlite_where=sa.text(_BADGE_TO_PACK)),
        sa.Index("ix_badge_reprint_requested", "id",
                 postgresql_where=sa.text("reprint_requested_at IS NOT NULL"),
                 sqlite_where=sa.text("reprint_requested_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(24), unique=True, nullable=False)
    person_id: Mapped[int] = mapped_column(sa.ForeignKey("person.id"), nullable=False, index=True)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    tag: Mapped[Tag] = enum_column(Tag, nullable=False)
    status: Mapped[BadgeStatus] = enum_column(
        BadgeStatus, default=BadgeStatus.produced, nullable=False
    )
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, nullable=False)
    # The random part of the signed QR token: rotating it invalidates printed codes.
    token_nonce: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    # What is printed on the card, kept as printed.
    printed_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    printed_unit: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    printed_delegation: Mapped[Optional[str]] = mapped_column(sa.String(200))
    pdf_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    reactivated_for_edition_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("edition.id"))
    shipment_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("shipment.id"))
    parcel_slot: Mapped[Optional[int]] = mapped_column(sa.SmallInteger)
    produced_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    deactivated_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    # Any change of the row (a new code, deactivation, re-activation): offline gates fetch
    # the badges changed since their last sync (app/workflow/gate.py).
    changed_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, onupdate=utcnow,
                                                 nullable=False)
    # A lost or damaged card waiting to be printed again with a new code (issue 13).
    reprint_requested_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    reprint_reason: Mapped[Optional[str]] = mapped_column(sa.String(200))

    person: Mapped[Person] = relationship()
    edition: Mapped[Edition] = relationship(foreign_keys=[edition_id])
    reactivated_for_edition: Mapped[Optional[Edition]] = relationship(
        foreign_keys=[reactivated_for_edition_id])
    shipment: Mapped[Optional[Shipment]] = relationship()

    def __repr__(self) -> str:
        return self.number


class GateScan(Model):
    """Every scan of a badge QR at a gate, valid or not."""

    __tablename__ = "gate_scan"

    id: Mapped[int] = mapped_column(primary_key=True)
    badge_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("badge.id"), index=True)
    result: Mapped[ScanResult] = enum_column(ScanResult, nullable=False)
    scanned_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    scanned_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))
    gate: Mapped[Optional[str]] = mapped_column(sa.String(50))
    # Scans made on an offline gate are uploaded later: the scanner's id makes the upload
    # idempotent; `offline` says the verdict was the gate's own (public keys and last sync).
    client_scan_id: Mapped[Optional[str]] = mapped_column(sa.String(36), unique=True)
    offline: Mapped[bool] = mapped_column(sa.Boolean, default=False, nullable=False)

    badge: Mapped[Optional[Badge]] = relationship()
    scanned_by: Mapped[Optional["CiieUser"]] = relationship(foreign_keys=[scanned_by_id])


# How many badges a parcel holds (a correlated count, read with the parcel: no query per row).
Shipment.badge_count = column_property(
    sa.select(sa.func.count(Badge.id)).where(Badge.shipment_id == Shipment.id)
    .correlate_except(Badge).scalar_subquery())


# --------------------------------------------------------------------------------------------
# Supporting events
# --------------------------------------------------------------------------------------------


class Event(TimestampMixin, Model):
    """A supporting event (配套活动) that an organiser publishes and units apply to."""

    __tablename__ = "event"
    __table_args__ = (
        sa.CheckConstraint("capacity > 0", name="capacity_positive"),
        sa.CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity", name="within_capacity"),
        sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(sa.ForeignKey("edition.id"), nullable=False)
    organiser_id: Mapped[int] = mapped_column(sa.ForeignKey("organiser.id"), nullable=False,
                                              index=True)
    title_zh: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    title_en: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description_zh: Mapped[Optional[str]] = mapped_column(sa.Text)
    description_en: Mapped[Optional[str]] = mapped_column(sa.Text)
    starts_at: Mapped[datetime] = mapped_column(AwareDateTime, nullable=False)
    ends_at: Mapped[datetime] = mapped_column(AwareDateTime, nullable=False)
    place: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    capacity: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    # Applied + accepted applications: SQL refuses more than the capacity.
    seats_taken: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    open_to_visitors: Mapped[bool] = mapped_column(sa.Boolean, default=True, nullable=False)
    status: Mapped[EventStatus] = enum_column(EventStatus, default=EventStatus.draft,
                                              nullable=False)

    edition: Mapped[Edition] = relationship()
    organiser: Mapped[Organiser] = relationship()

    @property
    def title(self) -> str:
        from app.i18n import pick

        return pick(self.title_zh, self.title_en)

    @property
    def description(self) -> str:
        from app.i18n import pick

        return pick(self.description_zh, self.description_en)

    @property
    def seats_left(self) -> int:
        return self.capacity - self.seats_taken

    def __repr__(self) -> str:
        return self.title


class EventApplication(TimestampMixin, Model):
    """A unit's application for one of its persons to attend an event."""

    __tablename__ = "event_application"
    __table_args__ = (
        sa.Index("uq_event_application_active", "event_id", "person_registration_id",
                 unique=True,
                 sqlite_where=sa.text("status IN ('applied', 'accepted')"),
                 postgresql_where=sa.text("status IN ('applied', 'accepted')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("event.id"), nullable=False, index=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), nullable=False, index=True)
    person_registration_id: Mapped[int] = mapped_column(
        sa.ForeignKey("person_registration.id"), nullable=False
    )
    status: Mapped[ApplicationStatus] = enum_column(
        ApplicationStatus, default=ApplicationStatus.applied, nullable=False
    )
    decision_reason: Mapped[Optional[str]] = mapped_column(sa.String(500))

    event: Mapped[Event] = relationship()
    unit: Mapped[Unit] = relationship()
    person_registration: Mapped[PersonRegistration] = relationship()


# --------------------------------------------------------------------------------------------
# Notifications and the audit trail
# --------------------------------------------------------------------------------------------


class Notification(Model):
    """Every SMS and e-mail the system sends, with its delivery status."""

    __tablename__ = "notification"
    __table_args__ = (
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The outbox: the sweeper looks for the few queued notices among all ever sent.
        sa.Index("ix_notification_queued", "id", sqlite_where=sa.text("status = 'queued'"),
                 postgresql_where=sa.text("status = 'queued'")),
        # The receipt poll looks for the few SMS the provider took and has not reported on.
        sa.Index("ix_notification_awaiting_receipt", "sent_at",
                 sqlite_where=sa.text("status = 'sent' AND provider_message_id IS NOT NULL"),
                 postgresql_where=sa.text(
                     "status = 'sent' AND provider_message_id IS NOT NULL")),
        # Each provider's last success and failure, for the operator (app/workflow/sms.py);
        # the failed notices are finance's list too.
        sa.Index("ix_notification_provider_sent", "provider", "sent_at"),
        # The mail server's last success (e-mails name no provider), for app/providers.py.
        sa.Index("ix_notification_email_sent", "sent_at",
                 sqlite_where=sa.text("channel = 'email'"),
                 postgresql_where=sa.text("channel = 'email'")),
        sa.Index("ix_notification_failed", "attempted_at",
                 sqlite_where=sa.text("status = 'failed'"),
                 postgresql_where=sa.text("status = 'failed'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # What makes a notice unique (e.g. lock batch + unit + channel): never sent twice.
    dedupe_key: Mapped[str] = mapped_column(sa.String(120), unique=True, nullable=False)
    channel: Mapped[NotificationChannel] = enum_column(NotificationChannel, nullable=False)
    unit_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    recipient: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    language: Mapped[str] = mapped_column(sa.String(5), default="zh", nullable=False)
    subject: Mapped[Optional[str]] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text, nullable=False)
    status: Mapped[NotificationStatus] = enum_column(
        NotificationStatus, default=NotificationStatus.queued, nullable=False
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    last_error: Mapped[Optional[str]] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    sent_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    # An SMS goes as a provider's approved template with parameters (app/gateways/sms.py
    # SMS_TEMPLATES), kept with the notice: never re-derived from the text.
    sms_template: Mapped[Optional[str]] = mapped_column(sa.String(40))
    sms_params: Mapped[Optional[dict]] = mapped_column(sa.JSON)
    # Who took it (log | aliyun | tencent), its id there (Alibaba's BizId, Tencent's SerialNo),
    # and the provider's code of the last answer or delivery report.
    provider: Mapped[Optional[str]] = mapped_column(sa.String(16))
    provider_message_id: Mapped[Optional[str]] = mapped_column(sa.String(64))
    provider_code: Mapped[Optional[str]] = mapped_column(sa.String(64))
    receipt_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    # The last try to send it, successful or not (the operator's "last failure").
    attempted_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)

    unit: Mapped[Optional[Unit]] = relationship()


class AuditEvent(Model):
    """Who did what to which record, when, from which state to which, and why."""

    __tablename__ = "audit_event"
    __table_args__ = (
        sa.Index("ix_audit_event_record", "record_type", "record_id"),
        sa.Index("ix_audit_event_at", "at"),
        # The audit log's filters by actor and by action, newest first (issue 13).
        sa.Index("ix_audit_event_actor", "actor_id", "id"),
        sa.Index("ix_audit_event_action", "action", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    actor_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("ab_user.id"))
    actor_name: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    record_type: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    record_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    action: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    from_state: Mapped[Optional[str]] = mapped_column(sa.String(32))
    to_state: Mapped[Optional[str]] = mapped_column(sa.String(32))
    reason: Mapped[Optional[str]] = mapped_column(sa.String(1000))
    detail: Mapped[Optional[dict]] = mapped_column(sa.JSON)

    actor: Mapped[Optional["CiieUser"]] = relationship(foreign_keys=[actor_id])


class BackgroundTask(Model):
    """A long batch action or export running in a worker: progress, then its report or file."""

    __tablename__ = "background_task"
    __table_args__ = (
        sa.CheckConstraint("processed >= 0 AND processed <= total", name="progress_in_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    operation: Mapped[str] = mapped_column(sa.String(60), nullable=False)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("ab_user.id"), nullable=False, index=True)
    status: Mapped[TaskStatus] = enum_column(TaskStatus, default=TaskStatus.queued,
                                             nullable=False)
    total: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    processed: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False)
    # What to run on: ids, a reason, filters (set when the task is created, read by the job).
    params: Mapped[Optional[dict]] = mapped_column(sa.JSON)
    # The report: counts and the refused rows with their reasons, or the error.
    result: Mapped[Optional[dict]] = mapped_column(sa.JSON)
    file_key: Mapped[Optional[str]] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime, default=utcnow, nullable=False)
    finished_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)
    # Written by the running job every few seconds (real time): silence means its worker died.
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(AwareDateTime)


class Counter(Model):
    """Named counters for human-readable numbers (unit numbers, orders, badges…)."""

    __tablename__ = "counter"

    name: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger, default=0, nullable=False)


class AcpRequest(Model):
    """The `txnTime` of the first UnionPay ACP request sent under one of our numbers (a
    refund's). UnionPay finds a transaction by orderId + txnTime and wants txnTime to be the
    moment of sending, so a retry must know the first one to ask what became of it
    (app/gateways/payments/acp.py). Written in its own transaction before the request leaves."""

    __tablename__ = "acp_request"

    channel: Mapped[PaymentChannel] = enum_column(PaymentChannel, primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    txn_time: Mapped[str] = mapped_column(sa.String(14), nullable=False)


# --------------------------------------------------------------------------------------------
# Users: Flask-AppBuilder's user, linked to the organisation it acts for
# --------------------------------------------------------------------------------------------


class CiieUser(FabUser):
    """FAB's user plus the unit, delegation or organiser it acts for. (The class name differs
    from FAB's "User" because FAB's relationships look that name up in the registry.)"""

    __tablename__ = "ab_user"

    unit_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    delegation_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("delegation.id"),
                                                         index=True)
    organiser_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("organiser.id"))
    # Every session cookie and API token carries the version it was issued at; logging out or
    # a new password moves it on, so copies made before stop working (app/security.py).
    session_version: Mapped[int] = mapped_column(sa.Integer, default=0, nullable=False,
                                                 server_default="0")

    unit: Mapped[Optional[Unit]] = relationship(foreign_keys=[unit_id])
    delegation: Mapped[Optional[Delegation]] = relationship(foreign_keys=[delegation_id])
    organiser: Mapped[Optional[Organiser]] = relationship(foreign_keys=[organiser_id])


User = CiieUser
