"""The standard request types, and default opening hours, for a utility (demo data and new
utilities). Calling again updates the types and leaves staff-made ones alone."""

from __future__ import annotations

from datetime import time

from django.db import transaction

from accounts.models import Utility
from servicerequests.models import ConnectionPolicy, OpeningHours, RequestType, Standard


def _label(en: str, ar: str, hi: str) -> dict[str, str]:
    return {"en": en, "ar": ar, "hi": hi}


PREMISES = {
    "name": "premises_type",
    "type": "choice",
    "required": True,
    "choices": ["residential", "commercial", "industrial", "agricultural"],
    "label": _label("Premises", "نوع العقار", "परिसर का प्रकार"),
}
PLOT = {
    "name": "plot_number",
    "type": "text",
    "required": True,
    "max_length": 60,
    "label": _label("Plot or building number", "رقم القطعة أو المبنى", "प्लॉट या भवन संख्या"),
}
METER_NUMBER = {
    "name": "meter_number",
    "type": "text",
    "required": False,
    "max_length": 40,
    "label": _label("Meter number", "رقم العداد", "मीटर नंबर"),
}

SUPPLY_FAULT = "supply_fault"
# "My power is off" where no outage is known: opened by the app's outage report
# (servicerequests.outage_reports), which looks for a known outage first. A crew goes out, so the
# target is in hours around the clock, not working days; the consumer's note is its description.
SUPPLY_FAULT_TYPE: dict = {
    "code": SUPPLY_FAULT,
    "name_en": "No supply at my premises",
    "name_ar": "انقطاع الكهرباء عن عقاري",
    "name_hi": "मेरे परिसर में बिजली नहीं है",
    "takes_estimate": False,
    "target_working_days": None,
    "target_hours": 4,
    "fields": [],
}
# Types the app opens through their own screen rather than the request form.
REPORT_ONLY_TYPES = (SUPPLY_FAULT,)

STANDARD_TYPES: list[dict] = [
    {
        "code": "new_connection",
        "name_en": "New connection",
        "name_ar": "توصيل كهرباء جديد",
        "name_hi": "नया बिजली कनेक्शन",
        "takes_estimate": True,
        "standard": Standard.CONNECTION,
        "target_working_days": None,
        "fields": [
            {
                "name": "voltage",
                "type": "choice",
                "required": True,
                "choices": ["low", "medium"],
                "label": _label("Voltage", "الجهد", "वोल्टेज"),
            },
            {
                "name": "load_kw",
                "type": "decimal",
                "required": True,
                "min": 1,
                "max": 100000,
                "label": _label("Load requested (kW)", "الحمل المطلوب (ك.و)", "माँगा गया लोड (kW)"),
            },
            PREMISES,
            PLOT,
        ],
    },
    {
        "code": "meter_installation",
        "name_en": "Meter installation",
        "name_ar": "تركيب عداد",
        "name_hi": "मीटर लगवाना",
        "takes_estimate": True,
        "target_working_days": 15,
        "fields": [
            PREMISES,
            PLOT,
            {
                "name": "phase",
                "type": "choice",
                "required": True,
                "choices": ["single", "three"],
                "label": _label("Phase", "عدد الأطوار", "फेज़"),
            },
        ],
    },
    {
        "code": "meter_conversion",
        "name_en": "Conversion to a prepaid or smart meter",
        "name_ar": "التحويل إلى عداد مسبق الدفع أو ذكي",
        "name_hi": "प्रीपेड या स्मार्ट मीटर में बदलाव",
        "takes_estimate": False,
        "target_working_days": 20,
        "fields": [
            {
                "name": "target",
                "type": "choice",
                "required": True,
                "choices": ["prepaid", "smart"],
                "label": _label("Convert to", "التحويل إلى", "किसमें बदलें"),
            },
            {
                "name": "estimated_billing",
                "type": "boolean",
                "required": False,
                "label": _label(
                    "My bills are estimated today",
                    "فواتيري الحالية تقديرية",
                    "अभी मेरे बिल अनुमान से बनते हैं",
                ),
            },
            METER_NUMBER,
        ],
    },
    {
        "code": "cost_estimate",
        "name_en": "Cost estimate",
        "name_ar": "طلب مقايسة",
        "name_hi": "लागत अनुमान",
        "takes_estimate": True,
        "target_working_days": 10,
        "fields": [
            {
                "name": "work",
                "type": "choice",
                "required": True,
                "choices": ["load_increase", "meter_relocation", "cable_relocation", "other"],
                "label": _label("Work to price", "الأعمال المطلوب تسعيرها", "किस काम का अनुमान"),
            },
            PLOT,
        ],
    },
    {
        "code": "meter_inspection",
        "name_en": "Meter inspection",
        "name_ar": "فحص العداد",
        "name_hi": "मीटर की जाँच",
        "takes_estimate": False,
        "target_working_days": 5,
        "fields": [
            {
                "name": "reason",
                "type": "choice",
                "required": True,
                "choices": ["reads_too_high", "stopped", "damaged", "seal_broken", "other"],
                "label": _label("Reason", "السبب", "कारण"),
            },
            METER_NUMBER,
            {
                "name": "preferred_date",
                "type": "date",
                "required": False,
                "label": _label(
                    "Preferred visit date", "موعد الزيارة المفضل", "जाँच की पसंदीदा तारीख"
                ),
            },
        ],
    },
    {
        "code": "complaint",
        "name_en": "Complaint",
        "name_ar": "شكوى",
        "name_hi": "शिकायत",
        "takes_estimate": False,
        "target_working_days": 10,
        "fields": [
            {
                "name": "category",
                "type": "choice",
                "required": True,
                "choices": [
                    "billing",
                    "meter",
                    "supply_quality",
                    "outage",
                    "staff_conduct",
                    "other",
                ],
                "label": _label("Category", "نوع الشكوى", "शिकायत का प्रकार"),
            },
            {
                "name": "subject",
                "type": "text",
                "required": True,
                "max_length": 200,
                "label": _label("Subject", "الموضوع", "विषय"),
            },
        ],
    },
    SUPPLY_FAULT_TYPE,
]


def request_types_seed(
    *,
    utility: Utility,
    connection_standard: bool = False,
    hours: tuple[time, time] = (time(8), time(15)),
) -> list[RequestType]:
    """The standard types for `utility`; with `connection_standard`, its regulated connection
    deadlines (ConnectionPolicy's defaults); opening hours on its working weekdays if it has none."""
    with transaction.atomic():
        types = []
        for position, spec in enumerate(STANDARD_TYPES):
            values = {"standard": "", "target_hours": None, **spec, "position": position}
            code = values.pop("code")
            request_type, _ = RequestType.objects.update_or_create(
                utility=utility, code=code, defaults=values
            )
            types.append(request_type)
        if connection_standard:
            ConnectionPolicy.objects.get_or_create(utility=utility)
        if not OpeningHours.objects.filter(utility=utility).exists():
            OpeningHours.objects.bulk_create(
                OpeningHours(utility=utility, weekday=day, opens=hours[0], closes=hours[1])
                for day in range(7)
                if day not in utility.weekend_days
            )
    return types
