"""SMS texts for one-time codes, in each language we serve.

The code comes first so that phones can offer it for autofill; the link text tells the account holder
who is asking, because the person linking may not be the person holding the registered mobile.
"""

from __future__ import annotations

SIGN_IN = {
    "en": "{code} is your {app} sign-in code. It expires in {minutes} minutes. Never share it with anyone.",
    "ar": "{code} هو رمز الدخول إلى تطبيق {app}. تنتهي صلاحيته خلال {minutes} دقائق. لا تشاركه مع أي شخص.",
    "hi": "{code} आपका {app} साइन-इन कोड है। यह {minutes} मिनट में समाप्त हो जाएगा। इसे किसी के साथ साझा न करें।",
}

LINK = {
    "en": (
        "{code} is the code to add your {utility} account {consumer_id} to the {app} app. "
        "Share it only with someone you trust to see your account. It expires in {minutes} minutes."
    ),
    "ar": (
        "{code} هو رمز إضافة حسابك لدى {utility} رقم {consumer_id} إلى تطبيق {app}. "
        "لا تشاركه إلا مع شخص تثق به للاطلاع على حسابك. تنتهي صلاحيته خلال {minutes} دقائق."
    ),
    "hi": (
        "{code} आपके {utility} खाते {consumer_id} को {app} ऐप में जोड़ने का कोड है। "
        "इसे केवल उसी से साझा करें जिस पर आप अपना खाता दिखाने का भरोसा करते हैं। यह {minutes} मिनट में समाप्त हो जाएगा।"
    ),
}
