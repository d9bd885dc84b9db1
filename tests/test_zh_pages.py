"""No English on Chinese pages: every page each demo role reaches, rendered in zh, shows no
English UI word (data, codes and brand names aside), so a new string without a translation or a
column without a label fails here before a user sees it."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import sqlalchemy as sa

from app import models as m
from app.extensions import db
from tests.conftest import UNIT_A, UNIT_F, Client, text_of

# One account per demo role, and the overseas unit, whose pages are the draft's (and whose
# name is English data).
ACCOUNTS = (UNIT_A, UNIT_F, "sh-delegation", "sh-pudong", "finance", "reviewer", "organiser",
            "gate", "person-demo", "admin")

# Latin words a zh page may show, each for a reason:
ALLOWED = {
    # Codes, formats and units Chinese text writes in Latin letters too.
    "CIIE", "USCC", "QR", "B2B", "ID", "APP", "VIP", "OK", "PDF", "Excel", "CSV", "UTF", "xls",
    "xlsx", "GBK", "JPEG", "PNG", "MB", "zip", "jpg",
    # The language switch names each language in its own language.
    "English",
}
# Pages that list FAB's roles, permissions and views by their names, identifiers the admin
# matches against config.CIIE_ROLES (and keeps in English in the database).
CODE_PAGES = ("/permissions/", "/viewmenus/", "/permissionviews/", "/roles/")

# Links the walk does not follow: leaving the session or the language, files and downloads,
# the API, paging, sorting and filtering (the same page again), and GET links that act.
SKIP = ("/logout", "/lang/", "/static/", "/download", "/files/", "/export", "/voucher",
        "/sandbox/", "/swagger", "/api/", "/reveal", "/count", "/delete/", "/action/",
        "/pdf", "/xlsx")


class Visible(HTMLParser):
    """What a reader of the page sees: its text and the attribute texts a browser shows
    (tooltips, placeholders, labels for screen readers, the words on buttons); and its links."""

    SHOWN = ("title", "placeholder", "aria-label", "alt")
    BUTTONS = ("submit", "button", "reset")

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.links: list[str] = []
        self._hidden = 0
        self._untranslated: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        # translate="no" (HTML's own mark) keeps stored codes as they are, e.g. an audit
        # entry's raw record: data, not interface.
        if tag in ("script", "style", "template") or a.get("translate") == "no":
            self._untranslated.append(tag)
            self._hidden += 1
            return
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        self.texts.extend(a[k] for k in self.SHOWN if a.get(k))
        if tag == "input" and a.get("type", "").lower() in self.BUTTONS and a.get("value"):
            self.texts.append(a["value"])

    def handle_endtag(self, tag: str) -> None:
        if self._untranslated and tag == self._untranslated[-1]:
            self._untranslated.pop()
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.texts.append(data)
        elif "new AdminFilters(" in data:
            self.texts.extend(filter_texts(data))


def filter_texts(script: str) -> list[str]:
    """What FAB's search filters show once added: the input of each column (a select's
    choices) and the names of its conditions, handed to the script as JSON."""
    decoder = json.JSONDecoder()
    rest = script[script.index("new AdminFilters(") + len("new AdminFilters("):]
    rest = rest[rest.index(",") + 1:].lstrip()   # the form's selector
    arguments = []
    for _ in range(3):   # labels, inputs, conditions
        value, end = decoder.raw_decode(rest)
        arguments.append(value)
        rest = rest[end:].lstrip().lstrip(",").lstrip()
    labels, inputs, conditions = arguments
    texts = [*labels.values(), *(name for names in conditions.values() for name in names)]
    for markup in inputs.values():
        texts.extend(Visible(markup).texts)
    return texts


# Text columns that hold codes the interface must label: not data.
CODE_COLUMNS = {"audit_event": {"record_type", "action", "from_state", "to_state"},
                "background_task": {"operation"}}


def data_strings(*tables: str) -> re.Pattern:
    """The demo world's own texts with Latin letters (English names, addresses, e-mails,
    logins), as a pattern of whole words: shown as they were entered, they are data, not
    interface. Enum and code columns hold codes the interface must label, and FAB's role,
    permission and view names are its own words (unless `tables` names them): not data."""
    found: set[str] = set()
    for table in m.metadata.sorted_tables:
        if table.name in ("ab_role", "ab_permission", "ab_view_menu") \
                and table.name not in tables:
            continue
        columns = [c for c in table.columns if isinstance(c.type, sa.String)
                   and not isinstance(c.type, sa.Enum)
                   and c.name not in CODE_COLUMNS.get(table.name, ())]
        for column in columns:
            for value in db.session.scalars(sa.select(column).distinct()):
                if value and re.search("[A-Za-z]", value):
                    found.add(value.strip())
    words = "|".join(re.escape(v) for v in sorted(found, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{words})(?![\w-])")


def english_words(text: str, data: re.Pattern) -> set[str]:
    """The Latin words of `text` that are neither data, nor a code (a word with digits: an
    order or credit code), nor allowed; a word_with_underscores is a code left unlabelled."""
    # Addresses, e-mail addresses and a message's %(placeholders)s are no words.
    text = re.sub(r"https?://\S+|[\w.+-]+@[\w.-]+|%\(\w+\)[sd]", " ", text)
    text = data.sub(" ", text)
    return {token for token in re.findall(r"[A-Za-z0-9_]+", text)
            if re.search("[A-Za-z]", token) and len(token) > 1 and token not in ALLOWED
            and not (re.search(r"\d", token) and "_" not in token)}


def pattern(path: str) -> str:
    """Pages that differ only by record id are one page for the walk."""
    return re.sub(r"/\d+(?=/|$)", "/N", path)


def walk(client: Client) -> dict[str, str]:
    """Every GET page the account reaches from its home page and the user menu's profile by
    links, each page kind once (the first row of each list), and the page of the first export
    it starts (a background task): {url: html}."""
    pages: dict[str, str] = {}
    seen: set[str] = set()
    todo = ["/", "/users/userinfo/"]
    exported = False
    while todo:
        url = todo.pop(0)
        if pattern(url) in seen:
            continue
        seen.add(pattern(url))
        response = client.get(url)
        assert response.status_code < 500, url
        if response.status_code != 200 or "text/html" not in response.content_type:
            continue
        pages[url] = response.data.decode()
        export = re.search(r'id="export-form" method="POST" action="([^"?]+)', pages[url])
        if export and not exported:
            exported = True
            task = client.post(export[1])
            assert task.status_code == 302, export[1]
            todo.append(urlsplit(task.headers["Location"]).path)
        for href in Visible(pages[url]).links:
            parts = urlsplit(href)
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/") \
                    or parts.query or any(s in parts.path for s in SKIP):
                continue
            todo.append(parts.path)
    return pages


def test_no_english_on_any_zh_page_of_any_role(app, world, login):
    data, codes = data_strings(), data_strings("ab_role", "ab_permission", "ab_view_menu")
    found: dict[str, set[str]] = {}
    visited = 0
    for username in ACCOUNTS:
        client = login(username)
        client.set_language("zh")
        for url, markup in walk(client).items():
            visited += 1
            words = english_words(" ".join(Visible(markup).texts),
                                  codes if url.startswith(CODE_PAGES) else data)
            if words:
                found[f"{username} {url}"] = words
    # Every role's pages: menus, lists, the first row's pages, forms, profile.
    assert visited > 150, visited
    assert not found, "\n".join(f"{k}: {sorted(v)}" for k, v in sorted(found.items()))


def test_the_check_finds_english_words_and_passes_codes_and_data(app, world):
    data = data_strings()
    assert english_words("提供方 Provider Trade No：__None", data) == {
        "Provider", "Trade", "No", "__None"}
    assert english_words("状态 awaiting_payment，Remove all items", data) == {
        "awaiting_payment", "Remove", "all", "items"}
    assert english_words(
        "Global Sourcing Ltd. 91310115MA1K4AB30U O2022000001 的 PDF、Excel 与 QR 码，"
        "联系 admin@demo.ciie.local 或 https://www.ciie.org/zbh/ %(count)s 条", data) == set()
    # Data passes as a whole only: a word of it alone is interface.
    assert english_words("Ltd. 单位", data) == {"Ltd"}


def js_messages(markup: str) -> dict[str, str]:
    """window.CIIE_I18N, the strings the page's scripts show (dialogs, select boxes…)."""
    found = re.search(r"window\.CIIE_I18N = (\{.*?\});</script>", markup, flags=re.S)
    assert found, "the page sets no CIIE_I18N"
    return json.loads(found.group(1))


def test_the_scripts_messages_are_chinese_on_zh_pages(login, world):
    client = login(UNIT_A)
    client.set_language("zh")
    messages = js_messages(client.get("/unit/persons/list/").data.decode())
    assert messages["select_remove_all"] == "删除所有项目"
    nothing = re.compile("(?!)")
    assert {key: text for key, text in messages.items() if english_words(text, nothing)} == {}
    client.set_language("en")
    assert js_messages(client.get("/unit/persons/list/").data.decode())[
        "select_remove_all"] == "Remove all items"


def test_every_column_a_view_shows_filters_or_edits_has_a_translated_label(app):
    """FAB names a column without a label after its code ("Provider Trade No"), in English
    whatever the language: a new column needs its label in app.labels.COLUMN_LABELS."""
    unlabelled = {}
    for view in app.appbuilder.baseviews:
        labels = getattr(view, "label_columns", None)
        if labels is None:
            continue
        # Extra form fields carry their own label.
        extra = {**(getattr(view, "add_form_extra_fields", None) or {}),
                 **(getattr(view, "edit_form_extra_fields", None) or {})}
        columns = set()
        for kind in ("list_columns", "show_columns", "search_columns", "add_columns",
                     "edit_columns"):
            columns |= set(getattr(view, kind, None) or ())
        missing = sorted(c for c in columns - set(extra)
                         if c not in labels or isinstance(labels[c], str))
        if missing:
            unlabelled[type(view).__name__] = missing
    assert unlabelled == {}, unlabelled


def test_the_profile_page_reads_in_chinese_for_every_role(login, world):
    """/users/userinfo/ showed its sections as None, Organisation and Audit, the fields as
    Unit, Delegation, Organiser and the values as True, None and [unit] (issue 13)."""
    for username, role, organisation in ((UNIT_A, "单位", "上海浦东医疗器械有限公司"),
                                         ("sh-pudong", "交易分团", "浦东新区交易分团"),
                                         ("organiser", "活动主办方", "进口博览局"),
                                         ("finance", "财务", None)):
        client = login(username)
        client.set_language("zh")
        page = text_of(client.get("/users/userinfo/"))
        assert "用户信息" in page and "所属机构" in page and "登录记录" in page, username
        assert f"角色 {role} " in page and "是否激活？ 是 " in page, username
        if organisation:
            assert organisation in page
        for english in ("None", "True", "Organisation", "Audit", "Unit", "[unit]"):
            assert english not in page, (username, english)
        client.set_language("en")
        page = text_of(client.get("/users/userinfo/"))
        assert "Organisation" in page and "Is Active? Yes" in page, username


def test_an_empty_choice_is_called_none_in_the_readers_language(login, world):
    """FAB's optional drop-downs showed their empty choice as "__None"."""
    client = login("admin")
    client.set_language("zh")
    page = client.get("/admin/delegations/add").data.decode()
    assert '<option selected value="__None">（无）</option>' in page
    client.set_language("en")
    page = client.get("/admin/delegations/add").data.decode()
    assert '<option selected value="__None">(none)</option>' in page


def test_the_user_statistics_chart_and_the_user_form_read_in_chinese(login, world):
    client = login("admin")
    client.set_language("zh")
    chart = client.get("/userstatschartview/chart/")
    assert chart.status_code == 200
    words = english_words(" ".join(Visible(chart.data.decode()).texts), data_strings())
    assert words == set() and "用户统计" in text_of(chart)
    form = client.get("/users/add").data.decode()
    assert ">单位</option>" in form and ">交易分团</option>" in form
    assert "LDAP" not in form and "OID" not in form


def test_admin_picks_a_role_by_its_chinese_name_in_chromium(page, world):
    """In the browser: the empty choice of a drop-down reads （无）, and the user form offers
    the roles by name (交易分团, not sub_delegation); the chosen one is saved."""
    from tests.test_browser_every_form import choose, fresh, save, type_into
    from tests.test_browser_smoke import log_in

    log_in(page, "admin")
    page.goto("/admin/delegations/add")
    shown = page.locator("#parent + .select2 .select2-selection__rendered")
    assert shown.get_attribute("title") == "（无）" and "__None" not in shown.inner_text()
    page.goto("/users/add")
    type_into(page, "#first_name", "浦东")
    type_into(page, "#last_name", "联络员")
    type_into(page, "#username", "pudong-contact")
    type_into(page, "#email", "pudong-contact@example.com")
    page.locator("#roles + .select2 .select2-selection").click()
    page.keyboard.type("交易分团")
    page.locator(".select2-container--open .select2-results__option",
                 has_text="交易分团").first.click()
    page.keyboard.press("Escape")
    choose(page, "delegation", "浦东新区交易分团")
    type_into(page, "#password", "Pudong-Passw0rd!")
    type_into(page, "#conf_password", "Pudong-Passw0rd!")
    save(page)
    user = fresh(m.User, username="pudong-contact")
    assert [role.name for role in user.roles] == ["sub_delegation"]
    assert user.delegation.code == "SH-PD"


def test_the_greeting_and_the_reconciliation_range_read_well(login, world):
    """Checks of two items issue 13 named and other changes fixed: the greeting names the
    organisation, the reconciliation's range is a first and a last day."""
    assert "欢迎，上海浦东医疗器械有限公司" in text_of(login(UNIT_A).get("/"))
    page = text_of(login("finance").get("/finance/reconciliation/"))
    assert "开始日期" in page and "结束日期" in page
    assert "原状态" not in page and "新状态" not in page
