"""Writes the bank statement fixtures tests/data/statements_* in the shapes the banks export
(tests/data/statements-SOURCES.md). Run from the repository root:

    .venv/bin/python tests/data/statements_make.py            # CSV and .xlsx
    /path/to/venv-with-xlwt/bin/python tests/data/statements_make.py --xls   # the .xls too

The files are committed; this script documents how they were made and makes them again.
The order numbers are those the tests' demo world gives: O2022000001 (the demo's pending
order), O2022000002 and O2022000003 (the next orders a test makes)."""
from __future__ import annotations

import csv
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OWN_ACCOUNT = "1001 2890 0920 0012 345"
OWN_NAME = "中国国际进口博览局"
UNIT_A = "上海浦东医疗器械有限公司"

# ICBC (工商银行) enterprise internet banking, 账户明细 export.
ICBC_HEADER = ["凭证号", "本方账号", "对方账号", "交易时间", "借/贷", "借方发生额", "贷方发生额",
               "对方行号", "摘要", "用途", "对方单位名称", "余额", "个性化信息"]
ICBC_DAY1 = [
    ["ICBC2022091300101", OWN_ACCOUNT, '="6222021001012345678"', "2022-09-13 09:12:40", "贷",
     "", "200.00", "102290000012", "货款", "证件费 O2022000001", UNIT_A, "1,200.00", ""],
    ["ICBC2022091300102", OWN_ACCOUNT, "31001500000050012345", "2022-09-13 10:30:02", "借",
     "1,500.00", "", "105290000011", "转账支出", "办公用品", "上海文具有限公司", "-300.00", ""],
    ["ICBC2022091300103", OWN_ACCOUNT, "", "2022-09-13 10:30:02", "借", "15.00", "", "",
     "手续费", "跨行汇款手续费", "", "-315.00", ""],
    ["ICBC2022091400104", OWN_ACCOUNT, "1001 2345 6789", "2022-09-14 11:02:51", "贷", "",
     "200.00", "102290000012", "汇入", "参会证费用", UNIT_A, "-115.00", ""],
    ["ICBC2022091400105", OWN_ACCOUNT, "6217001234567890123", "2022-09-14 14:45:09", "贷", "",
     "200.00", "105290000011", "汇入", "ｏ２０２２ ０００ ００３", "上海闵行康复器材有限公司",
     "85.00", ""],
    ["ICBC2022091400106", OWN_ACCOUNT, "6230580000012345678", "2022-09-14 16:20:00", "贷", "",
     "88.00", "403290000019", "汇入", "会务费", "某某咨询有限公司", "173.00", ""],
    ["ICBC2022091400107", OWN_ACCOUNT, "", "2022-09-14 17:00:00", "贷", "", "0.00", "",
     "利息冲正", "", "", "173.00", ""],
]
ICBC_DAY2 = ICBC_DAY1[3:6] + [
    ["ICBC2022091500108", OWN_ACCOUNT, '="6222021001012345678"', "2022-09-15 09:01:13", "贷",
     "", "200.00", "102290000012", "汇入", "O2022000001 补缴", UNIT_A, "373.00", ""],
    ["ICBC2022091500109", OWN_ACCOUNT, "", "2022-09-15 09:30:00", "借", "2.00", "", "",
     "手续费", "账户管理费", "", "371.00", ""],
]


def icbc_csv() -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["中国工商银行企业网上银行 账户明细"])
    w.writerow(["账号", OWN_ACCOUNT])
    w.writerow(["户名", OWN_NAME])
    w.writerow(["起止日期", "2022-09-13 至 2022-09-14"])
    w.writerow(["币种", "人民币"])
    w.writerow([])
    w.writerow(ICBC_HEADER)
    for row in ICBC_DAY1:
        w.writerow(row)
    w.writerow(["合计", "", "", "", "", "1,515.00", "688.00", "", "", "", "", "", ""])
    w.writerow(["笔数", "7"])
    return out.getvalue().encode("gbk")


def _number(text: str):
    return float(text.replace(",", "")) if text else ""


def icbc_xls(path: str) -> None:
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("账户明细")
    top = [["中国工商银行企业网上银行 账户明细"], ["账号", OWN_ACCOUNT], ["户名", OWN_NAME],
           ["起止日期", "2022-09-14 至 2022-09-15"], ["币种", "人民币"], []]
    rows = top + [ICBC_HEADER]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    start = len(rows)
    for r, row in enumerate(ICBC_DAY2):
        for c, value in enumerate(row):
            if c in (5, 6, 11):
                value = _number(value)
            elif value.startswith('="'):
                value = value[2:-1]
            sheet.write(start + r, c, value)
    end = start + len(ICBC_DAY2)
    sheet.write(end, 0, "合计")
    sheet.write(end, 5, 2.0)
    sheet.write(end, 6, 888.0)
    sheet.write(end + 1, 0, "笔数")
    sheet.write(end + 1, 1, 5)
    book.save(path)


# CCB (建设银行) enterprise internet banking, 账户明细 export (UTF-8 with BOM here).
CCB_HEADER = ["交易时间", "借方发生额（支取）", "贷方发生额（收入）", "余额", "币种", "对方户名",
              "对方账号", "对方开户机构", "记账日期", "摘要", "备注", "账户明细编号-交易流水号",
              "企业流水号", "凭证种类", "凭证号"]


def ccb_csv() -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["账号:", "31050161393600001234"])
    w.writerow(["账户名称:", OWN_NAME])
    w.writerow(["开户行:", "中国建设银行上海浦东分行"])
    w.writerow(["起始日期:", "20220914", "终止日期:", "20220914"])
    w.writerow(CCB_HEADER)
    w.writerow(["20220914 10:20:30", "", "200.00", "10,200.00", "人民币", UNIT_A,
                "1001 2345 6789", "中国工商银行上海浦东支行", "20220914", "汇入",
                "CIIE 证件费 o2022000001", "3105016139360000123400001", "", "", ""])
    w.writerow(["20220914 11:00:00", "3,000.00", "", "7,200.00", "人民币", "上海物业管理有限公司",
                "31001500000050099999", "中国建设银行上海分行", "20220914", "转账", "物业费",
                "3105016139360000123400002", "", "", ""])
    w.writerow(["20220914 11:00:00", "5.50", "", "7,194.50", "人民币", "", "", "", "20220914",
                "手续费", "电子汇划费", "3105016139360000123400003", "", "", ""])
    w.writerow(["20220914 15:12:00", "", "500.00", "7,694.50", "人民币", "杭州某贸易有限公司",
                "33050161234500001111", "中国建设银行杭州分行", "20220914", "汇入", "预付款",
                "3105016139360000123400004", "", "", ""])
    w.writerow(["合计", "3,005.50", "700.00"])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


# CMB (招商银行) enterprise internet banking (U-BANK), 交易明细 export.
CMB_HEADER = ["交易日", "交易时间", "起息日", "交易类型", "借方金额", "贷方金额", "余额", "摘要",
              "流水号", "流程实例号", "业务名称", "用途", "业务参考号", "业务摘要", "其它摘要",
              "收/付方分行名", "收/付方名称", "收/付方帐号", "收/付方开户行行号", "收/付方开户行名"]


def cmb_xlsx(path: str) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "交易明细"
    for row in (["招商银行交易明细"], ["账号:", "121909876510101"], ["账户名称:", OWN_NAME],
                ["币种:", "人民币"], ["查询日期:", "20220913", "--", "20220914"], []):
        sheet.append(row)
    sheet.append(CMB_HEADER)
    sheet.append(["20220913", "09:40:11", "20220913", "汇入汇款", None, 200.00, 12200.00,
                  "汇入", "K1234500001", "", "", "参会费 Ｏ２０２２０００００１", "", "", "",
                  "上海分行", UNIT_A, "1001 2345 6789", "102290000012", "中国工商银行"])
    sheet.append(["20220913", "10:05:00", "20220913", "转账汇款", 800.00, None, 11400.00,
                  "转账", "K1234500002", "", "", "会场租金", "", "", "", "上海分行",
                  "上海会展服务有限公司", "121900000000001", "308290003011", "招商银行"])
    sheet.append(["20220913", "10:05:00", "20220913", "手续费", 10.00, None, 11390.00,
                  "手续费", "K1234500003", "", "", "汇款手续费", "", "", "", "", "", "", "", ""])
    sheet.append(["20220914", "16:30:00", "20220914", "汇入汇款", None, "1,000.00", 12390.00,
                  "汇入", "K1234500004", "", "", "捐赠", "", "", "", "北京分行",
                  "北京某基金会", "110900000000002", "308100005019", "招商银行"])
    sheet.append([])
    sheet.append(["合计", None, None, None, 810.00, 1200.00])
    sheet.append(["笔数", 4])
    book.save(path)


def main() -> None:
    with open(os.path.join(HERE, "statements_icbc_gbk.csv"), "wb") as fh:
        fh.write(icbc_csv())
    with open(os.path.join(HERE, "statements_ccb_utf8bom.csv"), "wb") as fh:
        fh.write(ccb_csv())
    cmb_xlsx(os.path.join(HERE, "statements_cmb.xlsx"))
    if "--xls" in sys.argv:
        icbc_xls(os.path.join(HERE, "statements_icbc_next_day.xls"))


if __name__ == "__main__":
    main()
