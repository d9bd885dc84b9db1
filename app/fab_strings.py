"""Flask-AppBuilder strings its own zh catalogue lacks (or holds only as fuzzy, which is not
compiled); listed here so ours translates them. And the name of the empty choice of FAB's
drop-downs."""
import functools
from typing import Any

from flask_appbuilder.fields import QuerySelectField
from flask_babel import lazy_gettext as _l

BLANK_CHOICE = _l("(none)")

FAB_STRINGS = [
    _l("Database Error"),
    _l("Must have at least two capital letters, one special character, two digits, three "
       "lower case letters and a minimal length of 10."),
    _l("Contains (insensitive)"),
    _l("In"),
    _l("Not In"),
    _l("Either select a role or a group"),
    _l("List Groups"),
    _l("Edit User Information"),
    _l("User information changed"),
    _l("Groups"),
    _l("The user's password for authentication"),
    _l("User(s) exists in the role, cannot delete"),
    _l("Show Group"),
    _l("Add Group"),
    _l("Edit Group"),
    _l("User(s) exists in the group, cannot delete"),
    _l("Add"),
    _l("Edit"),
    _l("Show"),
    _l("Delete"),
    _l("Are you sure you want to delete this item?"),
    _l("Sign In with "),
    _l("It's not a good policy to remove a user, just make it inactive"),
]


def name_blank_choices() -> None:
    """FAB's optional drop-downs offer an empty choice without text, which WTForms 3 then
    shows as its value, "__None": the choice is called (none) in the reader's language."""
    init = QuerySelectField.__init__
    if getattr(init, "names_blank_choice", False):
        return

    @functools.wraps(init)
    def named(self: QuerySelectField, *args: Any, blank_text: Any = "", **kwargs: Any) -> None:
        init(self, *args, blank_text=blank_text or BLANK_CHOICE, **kwargs)

    named.names_blank_choice = True
    QuerySelectField.__init__ = named
