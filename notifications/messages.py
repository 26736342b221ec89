"""Alert texts in Arabic, English and Hindi, and how a context becomes a title and a body.

Context values are typed, not pre-formatted: a Decimal is money in the utility's currency (its own
decimals, the reader's digits and symbol), an aware datetime is shown in the utility's zone, a date is
a local day (a bill's due date) as the reader's language writes it, `days` is a count of days said the
way each language says it, a Phrase is said in the reader's language. Strings (area names, consumer
ids) pass through.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from babel.dates import format_skeleton, format_time

from core.errors import DomainError
from core.money import locale_for, money_format
from notifications import categories as c

if TYPE_CHECKING:
    from accounts.models import Utility

TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    c.LOW_BALANCE: {
        "en": (
            "Low balance",
            "The balance on account {consumer_id} is down to {balance}, below your alert level of "
            "{threshold}. Top up soon to keep the power on.",
        ),
        "ar": (
            "رصيدك منخفض",
            "انخفض رصيد حسابك رقم {consumer_id} إلى {balance}، وهو أقل من حد التنبيه الذي اخترته "
            "({threshold}). اشحن رصيدك قريبًا حتى لا تنقطع الكهرباء.",
        ),
        "hi": (
            "बैलेंस कम है",
            "खाता {consumer_id} का बैलेंस घटकर {balance} रह गया है, जो आपकी तय सीमा {threshold} से कम है। "
            "बिजली चालू रखने के लिए जल्द रिचार्ज करें।",
        ),
    },
    c.BALANCE_DAYS_LEFT: {
        "en": (
            "About {days} of power left",
            "At your recent usage, the balance on account {consumer_id} ({balance}) will last about "
            "{days}. Top up to avoid a disconnection.",
        ),
        "ar": (
            "رصيدك يكفي {days} تقريبًا",
            "بحسب استهلاكك الأخير، يكفي رصيد حسابك رقم {consumer_id} ({balance}) لمدة {days} تقريبًا. "
            "اشحن رصيدك لتجنّب فصل الكهرباء.",
        ),
        "hi": (
            "लगभग {days} की बिजली बची है",
            "हाल की खपत के हिसाब से खाता {consumer_id} का बैलेंस ({balance}) लगभग {days} चलेगा। "
            "बिजली कटने से बचने के लिए रिचार्ज करें।",
        ),
    },
    c.ZERO_BALANCE: {
        "en": (
            "Your balance has run out",
            "Account {consumer_id} has no balance left ({balance}). Top up now to avoid a disconnection.",
        ),
        "ar": (
            "نفد رصيدك",
            "لم يتبقَّ رصيد في حسابك رقم {consumer_id} ({balance}). اشحن الآن لتجنّب فصل الكهرباء.",
        ),
        "hi": (
            "आपका बैलेंस खत्म हो गया है",
            "खाता {consumer_id} में कोई बैलेंस नहीं बचा है ({balance})। बिजली कटने से बचने के लिए अभी रिचार्ज करें।",
        ),
    },
    c.DISCONNECTION_PENDING: {
        "en": (
            "Your power will be disconnected",
            "Supply to account {consumer_id} is due to be disconnected on {disconnect_at}. "
            "Top up or pay before then to keep the power on.",
        ),
        "ar": (
            "سيتم فصل الكهرباء عنك",
            "من المقرر فصل الكهرباء عن حسابك رقم {consumer_id} يوم {disconnect_at}. "
            "اشحن رصيدك أو ادفع قبل هذا الموعد لتبقى الكهرباء متصلة.",
        ),
        "hi": (
            "आपकी बिजली कटने वाली है",
            "खाता {consumer_id} की बिजली {disconnect_at} को काटी जानी तय है। "
            "बिजली चालू रखने के लिए उससे पहले रिचार्ज या भुगतान करें।",
        ),
    },
    c.OUTAGE_PLANNED: {
        "en": (
            "Planned power cut",
            "Power will be off in {area} from {start} to {end} for maintenance.",
        ),
        "ar": (
            "انقطاع مجدول للكهرباء",
            "ستنقطع الكهرباء في {area} من {start} حتى {end} لأعمال الصيانة.",
        ),
        "hi": (
            "बिजली की निर्धारित कटौती",
            "रखरखाव के कारण {area} में {start} से {end} तक बिजली बंद रहेगी।",
        ),
    },
    c.OUTAGE_UNPLANNED: {
        "en": (
            "Power outage in your area",
            "There is a power outage in {area}. Our teams are working on it and we will tell you "
            "as soon as supply is back.",
        ),
        "ar": (
            "انقطاع الكهرباء في منطقتك",
            "يوجد انقطاع في الكهرباء في {area}. فرقنا تعمل على إصلاحه، وسنبلغك فور عودة التيار.",
        ),
        "hi": (
            "आपके क्षेत्र में बिजली गुल है",
            "{area} में बिजली आपूर्ति बाधित है। हमारी टीमें इसे ठीक करने में लगी हैं; बिजली लौटते ही हम आपको बताएँगे।",
        ),
    },
    c.OUTAGE_RESTORED: {
        "en": (
            "Power is back",
            "Supply in {area} was restored on {restored_at}. Sorry for the wait.",
        ),
        "ar": ("عادت الكهرباء", "عادت الكهرباء إلى {area} يوم {restored_at}. نعتذر عن الإزعاج."),
        "hi": (
            "बिजली बहाल हो गई",
            "{area} में बिजली {restored_at} को बहाल हो गई। असुविधा के लिए खेद है।",
        ),
    },
    c.TOPUP_RECEIVED: {
        "en": (
            "Top-up received",
            "{amount} was added to account {consumer_id}. Your balance is now {balance}.",
        ),
        "ar": (
            "تم استلام الشحن",
            "تمت إضافة {amount} إلى حسابك رقم {consumer_id}. رصيدك الآن {balance}.",
        ),
        "hi": (
            "रिचार्ज मिल गया",
            "खाता {consumer_id} में {amount} जोड़े गए। अब आपका बैलेंस {balance} है।",
        ),
    },
    c.OUTAGE_REMINDER: {
        "en": (
            "Reminder: planned power cut",
            "A reminder that power will be off in {area} from {start} to {end}.",
        ),
        "ar": (
            "تذكير بانقطاع الكهرباء المجدول",
            "نذكّرك بأن الكهرباء ستنقطع في {area} من {start} حتى {end}.",
        ),
        "hi": (
            "याद दिला दें: बिजली की निर्धारित कटौती",
            "याद रहे, {area} में {start} से {end} तक बिजली बंद रहेगी।",
        ),
    },
    c.OUTAGE_RESCHEDULED: {
        "en": (
            "Planned power cut moved",
            "The planned power cut in {area} has a new time: power will now be off from {start} to {end}.",
        ),
        "ar": (
            "تغيّر موعد انقطاع الكهرباء المجدول",
            "تغيّر موعد انقطاع الكهرباء المجدول في {area}، وستنقطع الكهرباء الآن من {start} حتى {end}.",
        ),
        "hi": (
            "बिजली कटौती का समय बदला",
            "{area} में निर्धारित बिजली कटौती का समय बदल गया है। अब बिजली {start} से {end} तक बंद रहेगी।",
        ),
    },
    c.OUTAGE_CANCELLED: {
        "en": (
            "Planned power cut cancelled",
            "The power cut planned in {area} for {start} is cancelled. Your supply continues as normal.",
        ),
        "ar": (
            "أُلغي انقطاع الكهرباء المجدول",
            "أُلغي انقطاع الكهرباء الذي كان مقررًا في {area} يوم {start}، وستبقى الكهرباء متصلة كالمعتاد.",
        ),
        "hi": (
            "बिजली कटौती रद्द",
            "{area} में {start} से होने वाली बिजली कटौती रद्द कर दी गई है। बिजली आपूर्ति सामान्य रूप से जारी रहेगी।",
        ),
    },
    c.OUTAGE_UNPLANNED_ETA: {
        "en": (
            "Power outage in your area",
            "There is a power outage in {area}. Our teams are working on it and expect supply back by {end}.",
        ),
        "ar": (
            "انقطاع الكهرباء في منطقتك",
            "يوجد انقطاع في الكهرباء في {area}. فرقنا تعمل على إصلاحه، ونتوقع عودة التيار بحلول {end}.",
        ),
        "hi": (
            "आपके क्षेत्र में बिजली गुल है",
            "{area} में बिजली आपूर्ति बाधित है। हमारी टीमें इसे ठीक करने में लगी हैं; {end} तक बिजली लौटने की उम्मीद है।",
        ),
    },
    c.COMPENSATION_CREDITED: {
        "en": (
            "Compensation credited",
            "We credited {amount} to account {consumer_id} because {reason}.",
        ),
        "ar": (
            "أضفنا تعويضًا إلى حسابك",
            "أضفنا {amount} إلى حسابك رقم {consumer_id} تعويضًا لك، إذ {reason}.",
        ),
        "hi": (
            "मुआवज़ा जमा किया गया",
            "खाता {consumer_id} में {amount} मुआवज़े के रूप में जमा किए गए, क्योंकि {reason}।",
        ),
    },
    c.SERVICE_REQUEST_UPDATE: {
        "en": (
            "Update on your request {request_id}",
            "Your request {request_id} ({request_type}) for account {consumer_id} is now: {status}.",
        ),
        "ar": (
            "تحديث على طلبك رقم {request_id}",
            "أصبحت حالة طلبك رقم {request_id} ({request_type}) للحساب رقم {consumer_id}: {status}.",
        ),
        "hi": (
            "आपके अनुरोध {request_id} पर नई जानकारी",
            "खाता {consumer_id} के लिए आपके अनुरोध {request_id} ({request_type}) की स्थिति अब है: {status}।",
        ),
    },
    c.LINK_ENDED: {
        "en": (
            "Account {consumer_id} is no longer linked",
            "The utility changed the registered mobile of account {consumer_id} on {at}, so it has "
            "been removed from your app. If the account is still yours, link it again with the new "
            "number or call the helpline.",
        ),
        "ar": (
            "لم يعد الحساب رقم {consumer_id} مربوطًا",
            "غيّرت الجهة رقم الجوال المسجّل للحساب رقم {consumer_id} في {at}، لذلك أُزيل من تطبيقك. "
            "إن كان الحساب لا يزال لك فاربطه من جديد بالرقم الجديد أو اتصل بخدمة العملاء.",
        ),
        "hi": (
            "खाता {consumer_id} अब जुड़ा नहीं है",
            "बिजली कंपनी ने {at} को खाता {consumer_id} का पंजीकृत मोबाइल बदल दिया, इसलिए इसे आपके ऐप से "
            "हटा दिया गया है। अगर खाता अब भी आपका है, तो नए नंबर से फिर जोड़ें या हेल्पलाइन पर कॉल करें।",
        ),
    },
    c.MOVED_OUT: {
        "en": (
            "Final statement for account {consumer_id}",
            "Account {consumer_id} was closed on {at} when you moved out. Credit returned to you or "
            "carried to your new account: {credit}. Debt carried or written off: {debt}. The final "
            "statement stays readable in the app.",
        ),
        "ar": (
            "كشف الحساب الختامي للحساب رقم {consumer_id}",
            "أُغلق الحساب رقم {consumer_id} في {at} عند انتقالك. الرصيد المعاد إليك أو المنقول إلى حسابك "
            "الجديد: {credit}. الدين المنقول أو المُعفى منه: {debt}. يبقى كشف الحساب الختامي متاحًا في "
            "التطبيق.",
        ),
        "hi": (
            "खाता {consumer_id} का अंतिम विवरण",
            "आपके घर छोड़ने पर खाता {consumer_id} {at} को बंद कर दिया गया। आपको लौटाया गया या नए खाते में "
            "ले जाया गया बैलेंस: {credit}। आगे ले जाया गया या माफ़ किया गया बकाया: {debt}। अंतिम विवरण ऐप "
            "में देखा जा सकता है।",
        ),
    },
    c.ACCOUNT_CLOSED: {
        "en": (
            "Account {consumer_id} is closed",
            "Account {consumer_id} was closed on {at}. Its final statement and bills stay readable "
            "in the app.",
        ),
        "ar": (
            "أُغلق الحساب رقم {consumer_id}",
            "أُغلق الحساب رقم {consumer_id} في {at}. يبقى كشف الحساب الختامي والفواتير متاحًا للاطلاع في "
            "التطبيق.",
        ),
        "hi": (
            "खाता {consumer_id} बंद हो गया है",
            "खाता {consumer_id} {at} को बंद कर दिया गया। इसका अंतिम विवरण और बिल ऐप में देखे जा सकते हैं।",
        ),
    },
    c.BILL_ISSUED: {
        "en": (
            "Your bill is ready",
            "The bill for account {consumer_id} is ready: {amount} to pay by {at}.",
        ),
        "ar": (
            "فاتورتك جاهزة",
            "فاتورة حسابك رقم {consumer_id} جاهزة: المطلوب سداده {amount} في موعد أقصاه {at}.",
        ),
        "hi": (
            "आपका बिल तैयार है",
            "खाता {consumer_id} का बिल तैयार है: {at} तक {amount} का भुगतान करें।",
        ),
    },
    c.BILL_DUE_SOON: {
        "en": (
            "Bill due in {days}",
            "{amount} is still to pay on the bill for account {consumer_id}, due on {at}. Pay it "
            "by then to avoid a late payment fine.",
        ),
        "ar": (
            "موعد سداد فاتورتك بعد {days}",
            "يتبقى {amount} على فاتورة حسابك رقم {consumer_id}، وموعد استحقاقها {at}. ادفعها قبل هذا "
            "الموعد لتجنّب غرامة التأخير.",
        ),
        "hi": (
            "बिल {days} में देय है",
            "खाता {consumer_id} के बिल पर {amount} का भुगतान बाकी है, जिसकी देय तिथि {at} है। विलंब "
            "शुल्क से बचने के लिए तब तक भुगतान करें।",
        ),
    },
    c.BILL_FINED: {
        "en": (
            "Late payment fine added",
            "The bill for account {consumer_id} was due on {at} and is not paid, so a late payment "
            "fine of {fine} was added. {amount} is now to pay on it.",
        ),
        "ar": (
            "أُضيفت غرامة تأخير",
            "لم تُسدَّد فاتورة حسابك رقم {consumer_id} المستحقة في {at}، لذلك أُضيفت غرامة تأخير "
            "قدرها {fine}. المبلغ المستحق عليها الآن {amount}.",
        ),
        "hi": (
            "विलंब शुल्क जोड़ा गया",
            "खाता {consumer_id} का बिल {at} को देय था और उसका भुगतान नहीं हुआ, इसलिए {fine} का विलंब "
            "शुल्क जोड़ा गया है। अब इस बिल पर {amount} देय है।",
        ),
    },
    c.REMOVAL_NOTICE: {
        "en": (
            "Formal notice: meter removal",
            "Account {consumer_id} has {arrears} in overdue bills. If they are not paid before "
            "{at}, the meter will be removed and the contract ended. Pay now to keep your supply.",
        ),
        "ar": (
            "إنذار رسمي بإزالة العداد",
            "على حسابك رقم {consumer_id} فواتير متأخرة قيمتها {arrears}. إن لم تُسدَّد قبل {at} "
            "فسيُزال العداد ويُنهى التعاقد. ادفع الآن لتبقى الكهرباء متصلة.",
        ),
        "hi": (
            "औपचारिक नोटिस: मीटर हटाया जाएगा",
            "खाता {consumer_id} पर {arrears} के बिल बकाया हैं। यदि {at} से पहले इनका भुगतान नहीं हुआ, "
            "तो मीटर हटा दिया जाएगा और अनुबंध समाप्त कर दिया जाएगा। बिजली चालू रखने के लिए अभी भुगतान करें।",
        ),
    },
    c.REMOVAL_CONFIRMED: {
        "en": (
            "Your meter was removed",
            "The meter of account {consumer_id} was removed ({reason}) and its contract has "
            "ended. A prepaid meter replaces it; the {debt} still owed is recovered from your "
            "top-ups.",
        ),
        "ar": (
            "أُزيل العداد",
            "أُزيل عداد حسابك رقم {consumer_id} ({reason}) وانتهى التعاقد. يحل محله عداد مسبق الدفع، "
            "ويُحصَّل المبلغ المتبقي {debt} من عمليات الشحن.",
        ),
        "hi": (
            "आपका मीटर हटा दिया गया",
            "खाता {consumer_id} का मीटर हटा दिया गया ({reason}) और उसका अनुबंध समाप्त हो गया। उसकी "
            "जगह प्रीपेड मीटर लगाया गया है; बकाया {debt} आपके रिचार्ज से वसूला जाएगा।",
        ),
    },
}

# What an API answers a consumer in words, beside its data (title, text), rendered as alerts are.
REPORT_KNOWN_OUTAGE = "report_known_outage"
REPORT_KNOWN_OUTAGE_OVERDUE = "report_known_outage_overdue"
REPORT_FAULT = "report_fault"
REPORT_FAULT_UNTIMED = "report_fault_untimed"
REPLIES: dict[str, dict[str, tuple[str, str]]] = {
    REPORT_KNOWN_OUTAGE: {
        "en": (
            "We know your power is off",
            "We know the power is off at account {consumer_id}. Our teams are working on it and "
            "expect supply back by {end}. We will tell you when it is back.",
        ),
        "ar": (
            "نعلم أن الكهرباء مقطوعة لديك",
            "نعلم أن الكهرباء مقطوعة عن حسابك رقم {consumer_id}. فرقنا تعمل على إصلاحها، ونتوقع عودة "
            "التيار بحلول {end}. سنبلغك فور عودته.",
        ),
        "hi": (
            "हमें पता है कि आपकी बिजली गुल है",
            "हमें पता है कि खाता {consumer_id} की बिजली गुल है। हमारी टीमें इसे ठीक करने में लगी हैं; "
            "{end} तक बिजली लौटने की उम्मीद है। बिजली लौटते ही हम आपको बताएँगे।",
        ),
    },
    # The estimate has passed and the supply is not back: no time we cannot stand by.
    REPORT_KNOWN_OUTAGE_OVERDUE: {
        "en": (
            "We know your power is off",
            "We know the power is off at account {consumer_id}. Our teams are still working on it "
            "and we will tell you as soon as supply is back.",
        ),
        "ar": (
            "نعلم أن الكهرباء مقطوعة لديك",
            "نعلم أن الكهرباء مقطوعة عن حسابك رقم {consumer_id}. ما زالت فرقنا تعمل على إصلاحها، "
            "وسنبلغك فور عودة التيار.",
        ),
        "hi": (
            "हमें पता है कि आपकी बिजली गुल है",
            "हमें पता है कि खाता {consumer_id} की बिजली गुल है। हमारी टीमें अब भी इसे ठीक करने में लगी "
            "हैं; बिजली लौटते ही हम आपको बताएँगे।",
        ),
    },
    REPORT_FAULT: {
        "en": (
            "Your report is request {request_id}",
            "No outage is known where account {consumer_id} is, so we opened request "
            "{request_id} and a team will check your supply. We aim to restore it by {end}.",
        ),
        "ar": (
            "بلاغك هو الطلب رقم {request_id}",
            "لا نعلم بانقطاع في منطقة حسابك رقم {consumer_id}، لذلك فتحنا الطلب رقم {request_id} "
            "وسيفحص فريقنا التوصيل لديك. نسعى لإعادة التيار بحلول {end}.",
        ),
        "hi": (
            "आपकी शिकायत अनुरोध {request_id} है",
            "खाता {consumer_id} के क्षेत्र में कोई बिजली कटौती दर्ज नहीं है, इसलिए हमने अनुरोध "
            "{request_id} खोला है और एक टीम आपकी आपूर्ति की जाँच करेगी। हमारा लक्ष्य {end} तक बिजली "
            "बहाल करना है।",
        ),
    },
    # The utility gave its no-supply requests no target: no time is promised.
    REPORT_FAULT_UNTIMED: {
        "en": (
            "Your report is request {request_id}",
            "No outage is known where account {consumer_id} is, so we opened request "
            "{request_id} and a team will check your supply.",
        ),
        "ar": (
            "بلاغك هو الطلب رقم {request_id}",
            "لا نعلم بانقطاع في منطقة حسابك رقم {consumer_id}، لذلك فتحنا الطلب رقم {request_id} "
            "وسيفحص فريقنا التوصيل لديك.",
        ),
        "hi": (
            "आपकी शिकायत अनुरोध {request_id} है",
            "खाता {consumer_id} के क्षेत्र में कोई बिजली कटौती दर्ज नहीं है, इसलिए हमने अनुरोध "
            "{request_id} खोला है और एक टीम आपकी आपूर्ति की जाँच करेगी।",
        ),
    },
}

TEMPLATES.update(
    {
        c.AUTO_TOPUP_FAILED: {
            "en": (
                "Automatic top-up failed",
                "We could not take the automatic top-up of {amount} for account {consumer_id} "
                "from {card}. Nothing was charged. Top up in the app or update the card.",
            ),
            "ar": (
                "تعذّر الشحن التلقائي",
                "لم نتمكن من خصم الشحن التلقائي بقيمة {amount} لحسابك رقم {consumer_id} من {card}. "
                "لم يُخصم أي مبلغ. اشحن من التطبيق أو حدّث البطاقة.",
            ),
            "hi": (
                "ऑटो रिचार्ज नहीं हो सका",
                "खाता {consumer_id} का {amount} का ऑटो रिचार्ज {card} से नहीं हो सका। कोई राशि नहीं "
                "कटी। ऐप में रिचार्ज करें या कार्ड बदलें।",
            ),
        },
        c.AUTO_TOPUP_CAP_REACHED: {
            "en": (
                "Automatic top-up paused for this month",
                "The automatic top-up of {amount} for account {consumer_id} was not made: it "
                "would pass your monthly limit of {cap}. Top up in the app if you need to.",
            ),
            "ar": (
                "توقّف الشحن التلقائي لهذا الشهر",
                "لم يتم الشحن التلقائي بقيمة {amount} لحسابك رقم {consumer_id} لأنه يتجاوز الحد "
                "الشهري الذي اخترته ({cap}). اشحن من التطبيق إذا احتجت.",
            ),
            "hi": (
                "इस महीने ऑटो रिचार्ज रुका",
                "खाता {consumer_id} का {amount} का ऑटो रिचार्ज नहीं किया गया: इससे आपकी मासिक "
                "सीमा {cap} पार हो जाती। ज़रूरत हो तो ऐप में रिचार्ज करें।",
            ),
        },
        c.SHARE_INVITATION: {
            "en": (
                "An account was shared with you",
                "{holder} shared electricity account {consumer_id} with you. Open the app to "
                "accept or decline.",
            ),
            "ar": (
                "شارك أحدهم حسابًا معك",
                "شارك {holder} حساب الكهرباء رقم {consumer_id} معك. افتح التطبيق للقبول أو الرفض.",
            ),
            "hi": (
                "आपके साथ एक खाता साझा किया गया",
                "{holder} ने बिजली खाता {consumer_id} आपके साथ साझा किया है। स्वीकार या अस्वीकार "
                "करने के लिए ऐप खोलें।",
            ),
        },
        c.SHARE_ENDED: {
            "en": (
                "Shared account removed",
                "You no longer have access to account {consumer_id}: its holder ended the share, "
                "or the account changed hands.",
            ),
            "ar": (
                "أُزيل حساب مشترك",
                "لم يعد بإمكانك الوصول إلى الحساب رقم {consumer_id}: أنهى صاحبه المشاركة أو انتقل "
                "الحساب إلى شخص آخر.",
            ),
            "hi": (
                "साझा खाता हटाया गया",
                "अब आपके पास खाता {consumer_id} की पहुँच नहीं है: धारक ने साझा करना बंद किया या "
                "खाता किसी और के नाम हो गया।",
            ),
        },
        c.EMERGENCY_CREDIT_DUE: {
            "en": (
                "Emergency credit in use",
                "Account {consumer_id} is using {amount} of emergency credit. Top up before "
                "{repay_by} to repay it and keep the power on.",
            ),
            "ar": (
                "رصيد الطوارئ قيد الاستخدام",
                "يستخدم حسابك رقم {consumer_id} رصيد طوارئ بقيمة {amount}. اشحن قبل {repay_by} "
                "لسداده وإبقاء الكهرباء.",
            ),
            "hi": (
                "आपातकालीन क्रेडिट उपयोग में है",
                "खाता {consumer_id} {amount} का आपातकालीन क्रेडिट उपयोग कर रहा है। इसे चुकाने और "
                "बिजली चालू रखने के लिए {repay_by} से पहले रिचार्ज करें।",
            ),
        },
        c.HIGH_USAGE: {
            "en": (
                "Your use is higher than usual",
                "For the last {days}, account {consumer_id} used about {usage_kwh} kWh a day, "
                "{percent}% above your usual {baseline_kwh} kWh. Check for an appliance left on.",
            ),
            "ar": (
                "استهلاكك أعلى من المعتاد",
                "خلال آخر {days} استهلك حسابك رقم {consumer_id} نحو {usage_kwh} كيلوواط ساعة يوميًا، "
                "أي أعلى بنسبة {percent}% من المعتاد ({baseline_kwh} كيلوواط ساعة). تحقّق من جهاز "
                "تُرك يعمل.",
            ),
            "hi": (
                "आपकी खपत सामान्य से अधिक है",
                "पिछले {days} में खाता {consumer_id} ने रोज़ लगभग {usage_kwh} kWh बिजली ली, जो आपकी "
                "सामान्य {baseline_kwh} kWh से {percent}% अधिक है। देखें कि कोई उपकरण चालू तो नहीं "
                "रह गया।",
            ),
        },
        c.SANCTIONED_LOAD_EXCEEDED: {
            "en": (
                "Demand above your sanctioned load",
                "On {demand_at}, account {consumer_id} drew {demand_kw} kW, above its sanctioned "
                "load of {sanctioned_kw} kW. Spread heavy appliances out, or apply for a higher load.",
            ),
            "ar": (
                "الحمل أعلى من الحمل المعتمد",
                "في {demand_at} سحب حسابك رقم {consumer_id} {demand_kw} كيلوواط، وهو أعلى من الحمل "
                "المعتمد {sanctioned_kw} كيلوواط. وزّع تشغيل الأجهزة الكبيرة أو اطلب زيادة الحمل.",
            ),
            "hi": (
                "मांग स्वीकृत भार से अधिक",
                "{demand_at} को खाता {consumer_id} ने {demand_kw} kW बिजली ली, जो स्वीकृत भार "
                "{sanctioned_kw} kW से अधिक है। भारी उपकरण अलग-अलग समय चलाएँ या भार बढ़ाने का आवेदन करें।",
            ),
        },
    }
)

# The balance alerts with the calendar-aware run-out forecast (billing.forecast): the same alert
# with when the supply could first be cut and what to top up by then.
RUNOUT_TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    c.LOW_BALANCE: {
        "en": (
            "Low balance",
            "The balance on account {consumer_id} is down to {balance}, below your alert level of "
            "{threshold}. The supply could be disconnected from {disconnect_earliest}: top up at "
            "least {topup_amount} before then.",
        ),
        "ar": (
            "رصيدك منخفض",
            "انخفض رصيد حسابك رقم {consumer_id} إلى {balance}، وهو أقل من حد التنبيه ({threshold}). "
            "قد تُفصل الكهرباء ابتداءً من {disconnect_earliest}: اشحن {topup_amount} على الأقل قبل ذلك.",
        ),
        "hi": (
            "बैलेंस कम है",
            "खाता {consumer_id} का बैलेंस घटकर {balance} रह गया है, जो आपकी सीमा {threshold} से कम है। "
            "{disconnect_earliest} से बिजली कट सकती है: उससे पहले कम से कम {topup_amount} का रिचार्ज करें।",
        ),
    },
    c.BALANCE_DAYS_LEFT: {
        "en": (
            "About {days} of power left",
            "At your recent usage, the balance on account {consumer_id} ({balance}) will last about "
            "{days}. The supply could be disconnected from {disconnect_earliest}: top up at least "
            "{topup_amount} before then.",
        ),
        "ar": (
            "رصيدك يكفي {days} تقريبًا",
            "بحسب استهلاكك الأخير، يكفي رصيد حسابك رقم {consumer_id} ({balance}) لمدة {days} تقريبًا. "
            "قد تُفصل الكهرباء ابتداءً من {disconnect_earliest}: اشحن {topup_amount} على الأقل قبل ذلك.",
        ),
        "hi": (
            "लगभग {days} की बिजली बची है",
            "हाल की खपत के हिसाब से खाता {consumer_id} का बैलेंस ({balance}) लगभग {days} चलेगा। "
            "{disconnect_earliest} से बिजली कट सकती है: उससे पहले कम से कम {topup_amount} का रिचार्ज करें।",
        ),
    },
    c.ZERO_BALANCE: {
        "en": (
            "Your balance has run out",
            "Account {consumer_id} has no balance left ({balance}). The supply could be "
            "disconnected from {disconnect_earliest}: top up at least {topup_amount} before then.",
        ),
        "ar": (
            "نفد رصيدك",
            "لم يتبقَّ رصيد في حسابك رقم {consumer_id} ({balance}). قد تُفصل الكهرباء ابتداءً من "
            "{disconnect_earliest}: اشحن {topup_amount} على الأقل قبل ذلك.",
        ),
        "hi": (
            "आपका बैलेंस खत्म हो गया है",
            "खाता {consumer_id} में कोई बैलेंस नहीं बचा है ({balance})। {disconnect_earliest} से बिजली "
            "कट सकती है: उससे पहले कम से कम {topup_amount} का रिचार्ज करें।",
        ),
    },
}

# Where the app opens when the alert is tapped; filled from the context's ids.
DEEP_LINKS: dict[str, str] = {
    c.LOW_BALANCE: "smartmeter://accounts/{account_id}/top-up",
    c.BALANCE_DAYS_LEFT: "smartmeter://accounts/{account_id}/top-up",
    c.ZERO_BALANCE: "smartmeter://accounts/{account_id}/top-up",
    c.DISCONNECTION_PENDING: "smartmeter://accounts/{account_id}",
    c.TOPUP_RECEIVED: "smartmeter://accounts/{account_id}",
    c.OUTAGE_PLANNED: "smartmeter://outages/{outage_id}",
    c.OUTAGE_UNPLANNED: "smartmeter://outages/{outage_id}",
    c.OUTAGE_RESTORED: "smartmeter://outages/{outage_id}",
    c.OUTAGE_REMINDER: "smartmeter://outages/{outage_id}",
    c.OUTAGE_RESCHEDULED: "smartmeter://outages/{outage_id}",
    c.OUTAGE_CANCELLED: "smartmeter://outages/{outage_id}",
    c.OUTAGE_UNPLANNED_ETA: "smartmeter://outages/{outage_id}",
    c.COMPENSATION_CREDITED: "smartmeter://accounts/{account_id}",
    c.SERVICE_REQUEST_UPDATE: "smartmeter://service-requests/{request_id}",
    c.LINK_ENDED: "smartmeter://accounts",
    c.ACCOUNT_CLOSED: "smartmeter://accounts/{account_id}/statement",
    c.MOVED_OUT: "smartmeter://accounts/{account_id}/statement",
    c.BILL_ISSUED: "smartmeter://accounts/{account_id}",
    c.BILL_DUE_SOON: "smartmeter://accounts/{account_id}",
    c.BILL_FINED: "smartmeter://accounts/{account_id}",
    c.REMOVAL_NOTICE: "smartmeter://accounts/{account_id}",
    c.REMOVAL_CONFIRMED: "smartmeter://accounts/{account_id}",
    c.AUTO_TOPUP_FAILED: "smartmeter://accounts/{account_id}/top-up",
    c.AUTO_TOPUP_CAP_REACHED: "smartmeter://accounts/{account_id}/top-up",
    c.SHARE_INVITATION: "smartmeter://shares/invitations",
    c.SHARE_ENDED: "smartmeter://accounts",
    c.EMERGENCY_CREDIT_DUE: "smartmeter://accounts/{account_id}/top-up",
    c.HIGH_USAGE: "smartmeter://accounts/{account_id}/insight",
    c.SANCTIONED_LOAD_EXCEEDED: "smartmeter://accounts/{account_id}/insight",
}
INBOX_LINK = "smartmeter://notifications"


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str


@dataclass(frozen=True)
class Phrase:
    """A short text the caller holds in every language (a removal's ground), said in the reader's."""

    en: str
    ar: str
    hi: str

    def said_in(self, language: str) -> str:
        return getattr(self, language, self.en)


# Why a meter was removed (billing.models.RemovalOrder.Ground), as a consumer reads it.
REMOVAL_GROUNDS: dict[str, Phrase] = {
    "arrears": Phrase(
        en="bills unpaid after a formal notice",
        ar="فواتير غير مسددة بعد إنذار رسمي",
        hi="औपचारिक नोटिस के बाद भी बिल बकाया",
    ),
    "tampering": Phrase(
        en="tampering with the meter or its seals",
        ar="العبث بالعداد أو أختامه",
        hi="मीटर या उसकी सील से छेड़छाड़",
    ),
    "bypass": Phrase(
        en="bypassing the meter",
        ar="توصيل الكهرباء دون المرور بالعداد",
        hi="मीटर को बायपास करना",
    ),
    "supply_to_others": Phrase(
        en="supplying electricity to others",
        ar="توصيل الكهرباء إلى الغير دون ترخيص",
        hi="दूसरों को अवैध रूप से बिजली देना",
    ),
    "preventing_inspection": Phrase(
        en="inspection or maintenance prevented",
        ar="منع التفتيش أو الصيانة",
        hi="निरीक्षण या रखरखाव से रोकना",
    ),
    "demolition": Phrase(en="the premises were demolished", ar="هدم العقار", hi="परिसर ध्वस्त होना"),
    "load_over_contract": Phrase(
        en="load over the contracted load without permission",
        ar="تجاوز القدرة المتعاقد عليها دون إذن",
        hi="बिना अनुमति अनुबंधित लोड से अधिक लोड",
    ),
}


# --- Where an outage is, as its consumers know the place ----------------------------------------
# The words come from the utility (a grid area's name, a feeder's or transformer's locality and
# streets: outages.selectors.outage_place); only the joining words and the fallbacks are ours.
# A notice never names an equipment code: with no place words it says the area, else these.
YOUR_AREA = Phrase(en="your area", ar="منطقتك", hi="आपके क्षेत्र")
YOUR_PREMISES = Phrase(en="your premises", ar="عقارك", hi="आपके परिसर")

# (between one locality's streets, between localities, "and other areas" after the last)
_PLACE_WORDS = {
    "en": (", ", "; ", " and other areas"),
    "ar": ("، ", "؛ ", " ومناطق أخرى"),
    "hi": (", ", "; ", " और अन्य क्षेत्रों"),
}


def places_phrase(
    places: list[tuple[str, list[str]]],
    *,
    english: list[tuple[str, list[str]]] | None = None,
    more: bool = False,
) -> Phrase:
    """Localities, each with the streets meant (none: all of it), said in each language:
    [("Salmiya, block 4", ["streets 1–12"]), ("Jabriya", [])] → "Salmiya, block 4: streets 1–12;
    Jabriya". `english`: the same places in English words, for English readers, when the
    utility gave them. `more` adds "and other areas" for places left out to keep it short."""
    if not places:
        return YOUR_AREA

    def said(language: str) -> str:
        between_streets, between_places, others = _PLACE_WORDS[language]
        text = between_places.join(
            f"{locality}: {between_streets.join(streets)}" if streets else locality
            for locality, streets in (english if english and language == "en" else places)
        )
        return text + others if more else text

    return Phrase(en=said("en"), ar=said("ar"), hi=said("hi"))


def days_phrase(days: Decimal | int | float, *, language: str) -> str:
    """`2` → "2 days" / "يومين" / "2 दिन": a whole number of days, never fewer than one."""
    value = Decimal(str(days))
    if value < 1:
        return {"en": "less than a day", "ar": "أقل من يوم", "hi": "एक दिन से कम"}[language]
    n = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if language == "ar":
        # Arabic counts in three shapes: the dual, 3 to 10 with a plural noun, 11 up with a singular.
        if n == 1:
            return "يوم واحد"
        if n == 2:
            return "يومين"
        return f"{n} أيام" if n <= 10 else f"{n} يومًا"
    if language == "hi":
        return f"{n} दिन"
    return "1 day" if n == 1 else f"{n} days"


# The placeholders that hold money. A caller that hands one over as a number or a plain string
# ("100.000" from a JSON field) still gets the currency's own decimals, never the stored three.
MONEY_PLACEHOLDERS = frozenset(
    {"amount", "balance", "threshold", "credit", "debt", "fine", "arrears", "cap", "topup_amount"}
)


def _as_money(value: Any) -> Any:
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            return value
        return amount if amount.is_finite() else value
    return value


def _format_value(key: str, value: Any, *, language: str, utility: Utility | None) -> str:
    country = utility.country if utility else ""
    if key == "days":
        return days_phrase(value, language=language)
    if key in MONEY_PLACEHOLDERS:
        value = _as_money(value)
    if isinstance(value, Decimal):
        if utility is None:
            raise DomainError(f"The amount {key!r} needs a utility for its currency.")
        return money_format(
            value,
            currency=utility.currency,
            minor_unit=utility.currency_minor_unit,
            language=language,
            country=country,
        )
    if isinstance(value, Phrase):
        return value.said_in(language)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise DomainError(f"The time {key!r} must be timezone-aware.")
        zone = utility.zone if utility else UTC
        locale = locale_for(language, country)
        date_text = format_skeleton("MMMMEEEEd", value, tzinfo=zone, locale=locale)
        time_text = format_time(value, "short", tzinfo=zone, locale=locale)
        if key in ZONED_PLACEHOLDERS:
            time_text = f"{time_text} {_zone_label(value, zone, language)}"
        return _plain_spaces(locale.datetime_formats["long"].format(time_text, date_text))
    if isinstance(value, date):
        # Already a local day of the utility (a due date): written as it is, no zone to apply.
        locale = locale_for(language, country)
        return _plain_spaces(format_skeleton("MMMMEEEEd", value, tzinfo=UTC, locale=locale))
    return str(value)


# An outage's times carry their zone ("9:00 AM +03", "9:00 am IST", "9:00 AM EEST"): a power cut
# is planned to the minute, and Egypt's clocks change during the year.
ZONED_PLACEHOLDERS = frozenset(
    {"start", "end", "restored_at", "disconnect_earliest", "repay_by", "demand_at"}
)


def _zone_label(value: datetime, zone, language: str) -> str:
    label = value.astimezone(zone).tzname() or "UTC"
    # Kept left to right inside Arabic text (an isolate), or "+03" would read "03+".
    return f"\u2066{label}\u2069" if language == "ar" else label


def _plain_spaces(text: str) -> str:
    # As core.money does: plain spaces, no bidi marks; phones render CLDR's narrow spaces unevenly.
    return text.replace("\u202f", " ").replace("\xa0", " ").replace("\u200f", "")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def message_render(
    *, category: str, language: str, context: dict[str, Any], utility: Utility | None
) -> Rendered:
    """The title and body of one alert in `language`, with the context formatted for it. A balance
    alert that carries the run-out forecast (`disconnect_earliest`) says it."""
    if category in RUNOUT_TEMPLATES and context.get("disconnect_earliest") is not None:
        return _render(
            RUNOUT_TEMPLATES, category, language=language, context=context, utility=utility
        )
    return _render(TEMPLATES, category, language=language, context=context, utility=utility)


def reply_render(
    *, reply: str, language: str, context: dict[str, Any], utility: Utility | None
) -> Rendered:
    """One of REPLIES in `language`, formatted as alerts are (times in the utility's zone)."""
    return _render(REPLIES, reply, language=language, context=context, utility=utility)


def _render(
    texts: dict[str, dict[str, tuple[str, str]]],
    key: str,
    *,
    language: str,
    context: dict[str, Any],
    utility: Utility | None,
) -> Rendered:
    templates = texts[key]
    title, body = templates.get(language) or templates["en"]
    needed = _placeholders(title) | _placeholders(body)
    missing = sorted(needed - context.keys())
    if missing:
        raise DomainError(
            f"The {key} text needs {', '.join(missing)} in its context.",
            code="alert_context_incomplete",
        )
    values = {
        key: _format_value(key, context[key], language=language, utility=utility) for key in needed
    }
    return Rendered(title=title.format(**values), body=body.format(**values))


def deep_link(*, category: str, context: dict[str, Any]) -> str:
    pattern = DEEP_LINKS.get(category, INBOX_LINK)
    try:
        return pattern.format(**context)
    except (KeyError, IndexError):
        return INBOX_LINK


def push_data(*, category: str, context: dict[str, Any]) -> dict[str, str]:
    """The push's data payload: FCM wants strings only. Ids from the context travel with it."""
    data = {"type": category, "deep_link": deep_link(category=category, context=context)}
    for key, value in context.items():
        if key.endswith("_id") and value is not None:
            data[key] = str(value)
    return data
