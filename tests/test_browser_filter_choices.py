"""In Chromium, in Chinese: a delegation adds the sub-delegation filter to its persons list,
opens the drop-down (its choices fetched as it opens), chooses one and sees the list filtered,
the chosen name still shown after the reload."""
from __future__ import annotations

from tests.test_browser_delegation import shot
from tests.test_browser_smoke import log_in


def test_a_delegation_filters_its_persons_by_a_sub_delegation_it_chooses(page, world):
    log_in(page, "sh-delegation")
    page.goto("/delegation/persons/list/")
    assert "徐汇区交易分团" not in page.content()
    page.click("a:has-text('搜索')")
    page.click("#filter_form button:has-text('添加过滤条件')")
    page.click("#filter_form a.filter[name='unit_sub_delegation_id']")
    field = "select[name='_flt_0_unit_sub_delegation_id'] + .select2"
    page.locator(f"{field} .select2-selection").click()
    options = page.locator(".select2-container--open .select2-results__option")
    options.filter(has_text="浦东新区交易分团").wait_for()
    offered = options.all_inner_texts()
    assert "徐汇区交易分团" in offered and "浙江交易团" not in offered
    page.locator(".select2-container--open .select2-search__field").fill("徐汇")
    options.filter(has_text="徐汇区交易分团").click()
    with page.expect_navigation():
        page.click("#filter_form button[type='submit']")
    shot(page, "filter-choices-01-filtered")
    listed = page.locator("table.ciie-list").inner_text()
    assert "赵敏" in listed and "孙磊" in listed and "王伟" not in listed
    assert "交易分团 等于 “徐汇区交易分团”" in page.locator("#active-filters").inner_text()
    chosen = page.locator(f"{field} .select2-selection__rendered").inner_text()
    assert chosen.strip() == "徐汇区交易分团"
