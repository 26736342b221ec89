"""Writes for outages: publish, reschedule, cancel, start, restore, remind.

Every step locks the outage row (two staff pressing Publish at once must not send two notices),
checks the state it starts from, writes the history, and sends its notice through the fan-out with a
dedupe key that names the step and the schedule version, so a retried step sends nothing twice and a
reschedule sends again. A refused step changes nothing.

- steps.py: the steps, the checks of a schedule and of its notice, the evening-before reminder
- stream.py: a notice streamed to its people a chunk a task (outages.tasks.stream_outage_notice)
- notices.py: the notice to every affected account (push, else SMS) and the sweeper
- common.py: what they share (the outage's row lock, which notice, its fan-out key and context)
Callers import from `outages.services`; a tunable (NOTICE_STREAM_CHUNK, NOTICE_CHUNK, …) is read
in its own module, so patch it there.
"""

from outages.services.common import _locked  # noqa: F401
from outages.services.notices import (  # noqa: F401
    _notices_open,
    notice_live,
    notices_sms_queue,
    outage_notices_settle,
    outage_notices_sms_send,
    outage_notices_sweep,
)
from outages.services.steps import (  # noqa: F401
    LateNoticeUnconfirmed,
    _event,
    _iso,
    late_notice_consequence,
    notice_is_late,
    notice_lead,
    outage_cancel,
    outage_publish,
    outage_reminders_send,
    outage_reschedule,
    outage_restore,
    outage_schedule_check,
    outage_start,
)
from outages.services.stream import outage_notice_stream  # noqa: F401
