"""Administration of the bank statement layouts: for each bank, the names its export gives
the columns finance's import reads (docs/bank-statements.md)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

from app import models as m
from app.scoping.interface import ScopedInterface
from app.views.base import ScopedModelView
from app.workflow.errors import WorkflowError

HEADER_HELP = _l("The column's names in this bank's export, separated by |")


class BankStatementProfileView(ScopedModelView):
    route_base = "/admin/bank-profiles"
    class_permission_name = "BankStatementProfiles"
    datamodel = ScopedInterface(m.BankStatementProfile)
    title = _l("Bank statement layouts")
    base_order = ("id", "asc")
    list_columns = ["code", "name_zh", "name_en", "date_headers", "credit_headers",
                    "amount_headers", "active"]
    show_columns = add_columns = edit_columns = [
        "code", "name_zh", "name_en", "date_headers", "date_formats", "credit_headers",
        "debit_headers", "amount_headers", "direction_headers", "credit_marks",
        "payer_name_headers", "payer_account_headers", "memo_headers", "serial_headers",
        "balance_headers", "active"]
    search_columns = ["code", "name_zh", "name_en"]
    base_permissions = ["can_list", "can_show", "can_add", "can_edit"]
    label_columns = {
        "code": _l("Code"), "name_zh": _l("Bank (Chinese)"), "name_en": _l("Bank (English)"),
        "date_headers": _l("Date column"), "date_formats": _l("Date formats"),
        "credit_headers": _l("Credit column"), "debit_headers": _l("Debit column"),
        "amount_headers": _l("Single amount column"),
        "direction_headers": _l("Debit/credit (借/贷) column"),
        "credit_marks": _l("Marks of a credit"), "payer_name_headers": _l("Payer name column"),
        "payer_account_headers": _l("Payer account column"), "memo_headers": _l("Memo columns"),
        "serial_headers": _l("Serial number column"), "balance_headers": _l("Balance column"),
        "active": _l("Active"),
    }
    description_columns = {
        "date_headers": HEADER_HELP, "credit_headers": HEADER_HELP,
        "debit_headers": HEADER_HELP, "payer_name_headers": HEADER_HELP,
        "payer_account_headers": HEADER_HELP, "serial_headers": HEADER_HELP,
        "memo_headers": _l("Every column of these names is read into the memo, separated "
                           "by |"),
        "amount_headers": _l("For banks with one amount column instead of credit and debit "
                             "columns; a negative amount is a debit unless a 借/贷 column "
                             "says"),
        "credit_marks": _l("What the 借/贷 column says for money received, separated by |"),
        "date_formats": _l("strftime formats tried in turn, separated by |, e.g. "
                           "%Y-%m-%d|%Y%m%d"),
    }

    def _check(self, item: m.BankStatementProfile) -> None:
        item.code = (item.code or "").strip().upper()
        if not (item.date_headers or "").strip():
            raise WorkflowError(_l("Enter the name of the date column."), 400)
        if not (item.credit_headers or "").strip() and not (item.amount_headers or "").strip():
            raise WorkflowError(_l("Enter the name of the credit column, or of the single "
                                   "amount column."), 400)
        for name in ("credit_headers", "debit_headers", "amount_headers", "direction_headers",
                     "credit_marks", "payer_name_headers", "payer_account_headers",
                     "memo_headers", "serial_headers", "balance_headers"):
            if not (getattr(item, name) or "").strip():
                setattr(item, name, None)
        if not (item.date_formats or "").strip():
            item.date_formats = "%Y-%m-%d|%Y%m%d|%Y/%m/%d"

    def pre_add(self, item: m.BankStatementProfile) -> None:
        self._check(item)

    def pre_update(self, item: m.BankStatementProfile) -> None:
        self._check(item)
