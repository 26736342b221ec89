"""What postpaid consumers are told, in Arabic, English and Hindi: a bill issued, a bill due soon,
a late fine, the formal notice of removal and the removal; amounts in the currency's decimals,
due dates as local days; the urgent ones by SMS when no phone has the app."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing import bills, removals
from billing.models import Bill
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, UserFactory, UtilityFactory
from tests.billing.factories import policy, progressive_tariff
from tests.meters.factories import EGYPT, MeterFactory
from tests.notifications.factories import DeviceFactory

SEPTEMBER, ISSUED, DUE = date(2026, 9, 1), date(2026, 10, 1), date(2026, 10, 16)


def household(utility_values: dict, fixed: str):
    utility = UtilityFactory(**utility_values)
    utility.late_fine_percent = Decimal("7")
    utility.save()
    progressive_tariff(utility, slabs=((0, "0.68"),), fixed=fixed)
    policy(utility, bill_due_days=15, bill_due_reminder_days=3, removal_months_late=2)
    meter = MeterFactory(utility=utility, payment_mode="postpaid")
    users = {
        language: AccountLinkFactory(
            account=meter.account, user=UserFactory(language=language)
        ).user
        for language in ("en", "ar", "hi")
    }
    return meter.account, users


@pytest.fixture
def egypt_household(db):
    return household(EGYPT, fixed="1.00")  # 30.00 EGP for September


@pytest.fixture
def kuwait_household(db):
    return household({}, fixed="0.125")  # 3.750 KWD for September


def bodies(users, category: str) -> dict[str, tuple[str, str]]:
    return {
        language: tuple(
            Notification.objects.filter(user=user, category=category).values_list("title", "body")[
                0
            ]
        )
        for language, user in users.items()
    }


def test_a_bill_issued_in_each_language(egypt_household, django_capture_on_commit_callbacks):
    account, users = egypt_household
    with django_capture_on_commit_callbacks(execute=True):
        bills.bill_issue(account=account, month=SEPTEMBER, issued_on=ISSUED)

    n = account.consumer_id
    assert bodies(users, "bill_issued") == {
        "en": (
            "Your bill is ready",
            f"The bill for account {n} is ready: EGP 30.00 to pay by Fri, Oct 16.",
        ),
        "ar": (
            "فاتورتك جاهزة",
            f"فاتورة حسابك رقم {n} جاهزة: المطلوب سداده 30.00 ج.م. في موعد أقصاه الجمعة، 16 أكتوبر.",
        ),
        "hi": (
            "आपका बिल तैयार है",
            f"खाता {n} का बिल तैयार है: शुक्र, 16 अक्टूबर तक EGP 30.00 का भुगतान करें।",
        ),
    }


def test_a_bill_due_soon_in_each_language(egypt_household):
    account, users = egypt_household
    bills.bill_issue(account=account, month=SEPTEMBER, issued_on=ISSUED)

    assert bills.bill_reminders_send(utility=account.utility, today=date(2026, 10, 12)) == []
    assert len(bills.bill_reminders_send(utility=account.utility, today=date(2026, 10, 13))) == 1
    assert bills.bill_reminders_send(utility=account.utility, today=date(2026, 10, 14)) == []

    n = account.consumer_id
    assert bodies(users, "bill_due_soon") == {
        "en": (
            "Bill due in 3 days",
            f"EGP 30.00 is still to pay on the bill for account {n}, due on Fri, Oct 16. Pay it by "
            "then to avoid a late payment fine.",
        ),
        "ar": (
            "موعد سداد فاتورتك بعد 3 أيام",
            f"يتبقى 30.00 ج.م. على فاتورة حسابك رقم {n}، وموعد استحقاقها الجمعة، 16 أكتوبر. ادفعها "
            "قبل هذا الموعد لتجنّب غرامة التأخير.",
        ),
        "hi": (
            "बिल 3 दिन में देय है",
            f"खाता {n} के बिल पर EGP 30.00 का भुगतान बाकी है, जिसकी देय तिथि शुक्र, 16 अक्टूबर है। "
            "विलंब शुल्क से बचने के लिए तब तक भुगतान करें।",
        ),
    }
    assert Bill.objects.get().reminded_at is not None


def test_a_fine_in_each_language(egypt_household):
    account, users = egypt_household
    bills.bill_issue(account=account, month=SEPTEMBER, issued_on=ISSUED)
    bills.fines_apply(today=date(2026, 10, 17), utility=account.utility)

    n = account.consumer_id
    assert bodies(users, "bill_fined") == {
        "en": (
            "Late payment fine added",
            f"The bill for account {n} was due on Fri, Oct 16 and is not paid, so a late payment "
            "fine of EGP 2.10 was added. EGP 32.10 is now to pay on it.",
        ),
        "ar": (
            "أُضيفت غرامة تأخير",
            f"لم تُسدَّد فاتورة حسابك رقم {n} المستحقة في الجمعة، 16 أكتوبر، لذلك أُضيفت غرامة تأخير "
            "قدرها 2.10 ج.م.. المبلغ المستحق عليها الآن 32.10 ج.م..",
        ),
        "hi": (
            "विलंब शुल्क जोड़ा गया",
            f"खाता {n} का बिल शुक्र, 16 अक्टूबर को देय था और उसका भुगतान नहीं हुआ, इसलिए EGP 2.10 का "
            "विलंब शुल्क जोड़ा गया है। अब इस बिल पर EGP 32.10 देय है।",
        ),
    }


def test_the_formal_notice_in_each_language(egypt_household):
    account, users = egypt_household
    bills.bill_issue(account=account, month=SEPTEMBER, issued_on=ISSUED)
    bills.fines_apply(today=date(2026, 10, 17), utility=account.utility)

    [order] = removals.removal_notices_send(utility=account.utility, today=date(2026, 12, 17))

    n = account.consumer_id
    assert order.removal_due_on == date(2027, 1, 16)
    assert bodies(users, "removal_notice") == {
        "en": (
            "Formal notice: meter removal",
            f"Account {n} has EGP 32.10 in overdue bills. If they are not paid before Sat, Jan 16, "
            "the meter will be removed and the contract ended. Pay now to keep your supply.",
        ),
        "ar": (
            "إنذار رسمي بإزالة العداد",
            f"على حسابك رقم {n} فواتير متأخرة قيمتها 32.10 ج.م.. إن لم تُسدَّد قبل السبت، 16 يناير "
            "فسيُزال العداد ويُنهى التعاقد. ادفع الآن لتبقى الكهرباء متصلة.",
        ),
        "hi": (
            "औपचारिक नोटिस: मीटर हटाया जाएगा",
            f"खाता {n} पर EGP 32.10 के बिल बकाया हैं। यदि शनि, 16 जनवरी से पहले इनका भुगतान नहीं हुआ, "
            "तो मीटर हटा दिया जाएगा और अनुबंध समाप्त कर दिया जाएगा। बिजली चालू रखने के लिए अभी भुगतान करें।",
        ),
    }


def test_the_removal_in_each_language(egypt_household):
    account, users = egypt_household
    staff = UserFactory(is_staff=True)
    order = removals.removal_record(
        account=account,
        ground="supply_to_others",
        evidence="A cable to the neighbouring flat, found at the inspection.",
        staff=staff,
    )

    order = removals.removal_confirm(order=order, staff=staff, new_meter_serial="EG-PRE-11")

    n, debt = account.consumer_id, order.conversion.arrears
    assert debt > 0  # the final bills of the ended contract
    assert bodies(users, "removal_confirmed") == {
        "en": (
            "Your meter was removed",
            f"The meter of account {n} was removed (supplying electricity to others) and its "
            f"contract has ended. A prepaid meter replaces it; the EGP {debt:.2f} still owed is "
            "recovered from your top-ups.",
        ),
        "ar": (
            "أُزيل العداد",
            f"أُزيل عداد حسابك رقم {n} (توصيل الكهرباء إلى الغير دون ترخيص) وانتهى التعاقد. يحل محله "
            f"عداد مسبق الدفع، ويُحصَّل المبلغ المتبقي {debt:.2f} ج.م. من عمليات الشحن.",
        ),
        "hi": (
            "आपका मीटर हटा दिया गया",
            f"खाता {n} का मीटर हटा दिया गया (दूसरों को अवैध रूप से बिजली देना) और उसका अनुबंध समाप्त हो "
            f"गया। उसकी जगह प्रीपेड मीटर लगाया गया है; बकाया EGP {debt:.2f} आपके रिचार्ज से वसूला जाएगा।",
        ),
    }


def test_amounts_keep_the_three_decimals_of_the_dinar(kuwait_household):
    account, users = kuwait_household
    bills.bill_issue(account=account, month=SEPTEMBER, issued_on=ISSUED)
    bills.bill_reminders_send(utility=account.utility, today=date(2026, 10, 13))
    bills.fines_apply(today=date(2026, 10, 17), utility=account.utility)
    removals.removal_notices_send(utility=account.utility, today=date(2026, 12, 17))

    shown = {
        category: bodies(users, category)
        for category in ("bill_issued", "bill_due_soon", "bill_fined", "removal_notice")
    }
    assert "KWD 3.750 to pay" in shown["bill_issued"]["en"][1]
    assert "3.750 د.ك." in shown["bill_due_soon"]["ar"][1]
    # 7 % of 3.750 is 0.2625: 0.263, the fils rounded half up.
    assert "fine of KWD 0.263 was added. KWD 4.013 is now" in shown["bill_fined"]["en"][1]
    assert "KWD 4.013 के बिल बकाया" in shown["removal_notice"]["hi"][1]
    for languages in shown.values():
        for _title, body in languages.values():
            assert "3.75 " not in body and "4.01 " not in body and "4.0130" not in body


# --- SMS ------------------------------------------------------------------------------------------


def test_urgent_notices_go_by_sms_to_a_holder_without_a_device_not_to_one_with(
    egypt_household, sms_outbox, fcm_server, django_capture_on_commit_callbacks
):
    account, users = egypt_household
    DeviceFactory(user=users["en"])
    with django_capture_on_commit_callbacks(execute=True):
        bills.bill_issue(account=account, month=SEPTEMBER, issued_on=ISSUED)
        bills.fines_apply(today=date(2026, 10, 17), utility=account.utility)
    assert sms_outbox == []  # a bill and a fine are not urgent

    with django_capture_on_commit_callbacks(execute=True):
        removals.removal_notices_send(utility=account.utility, today=date(2026, 12, 17))

    by_phone = {m.to: m.body for m in sms_outbox}
    assert set(by_phone) == {users["ar"].phone, users["hi"].phone}
    notice = Notification.objects.get(user=users["ar"], category="removal_notice")
    assert by_phone[users["ar"].phone] == f"{notice.title}: {notice.body}"
    assert (
        Notification.objects.get(user=users["en"], category="removal_notice").push_status == "sent"
    )


def test_nobody_linked_the_mobile_hears_only_what_is_urgent(
    db, sms_outbox, django_capture_on_commit_callbacks
):
    utility = UtilityFactory(**EGYPT, late_fine_percent=Decimal("7"))
    progressive_tariff(utility, slabs=((0, "0.68"),), fixed="1.00")
    policy(utility, bill_due_days=15, bill_due_reminder_days=3, removal_months_late=2)
    account = MeterFactory(utility=utility, payment_mode="postpaid").account

    with django_capture_on_commit_callbacks(execute=True):
        bills.bill_issue(account=account, month=SEPTEMBER, issued_on=ISSUED)
        bills.bill_reminders_send(utility=utility, today=date(2026, 10, 13))
        bills.fines_apply(today=date(2026, 10, 17), utility=utility)
    assert sms_outbox == []

    staff = UserFactory(is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        removals.removal_notices_send(utility=utility, today=date(2026, 12, 17))
        order = removals.removal_record(
            account=account, ground="bypass", evidence="Meter bypassed with a jumper.", staff=staff
        )
        removals.removal_confirm(order=order, staff=staff, new_meter_serial="EG-PRE-12")

    to_mobile = [m.body for m in sms_outbox if m.to == account.registered_mobile]
    assert to_mobile[0].startswith("إنذار رسمي بإزالة العداد: ")
    assert any(
        body.startswith("أُزيل العداد: ") and "توصيل الكهرباء دون المرور بالعداد" in body
        for body in to_mobile
    )
