"""The guaranteed-standards engine: which failures are owed compensation, how much, and paying it.

The rules are the Saudi regulator's table (DOMAIN.md §3, "Saudi Arabia: guaranteed service
standards"), with every number read from the utility's StandardsPolicy row; a utility without one
compensates nothing. Each failure is one Compensation row per (account, standard, event), so every
function here may run any number of times.

- common.py: amounts beyond a threshold, one compensation per event, corrections
- evidence.py: each consumer's own evidence of an outage (docs/events.md)
- outage.py: notice, restoration and repeated outages, measured and measured again
- relay.py: reconnection after payment, wrongful disconnection
- paying.py: crediting what is owed when its exemption window closes
- exemptions.py: force-majeure exemptions
Callers import from `outages.standards`.
"""

from outages.standards.common import (  # noqa: F401
    REASONS,
    amount_beyond,
    compensation_correct,
    compensation_record,
    late_notice_compensated,
    policy_for,
    repeated_amount,
)
from outages.standards.evidence import Evidence, outage_evidence  # noqa: F401
from outages.standards.exemptions import exemption_decide, exemption_file  # noqa: F401
from outages.standards.outage import (  # noqa: F401
    standards_evaluate_outage,
    standards_remeasure_outage,
)
from outages.standards.paying import (  # noqa: F401
    compensation_pay,
    compensations_pay_due,
    compensations_payable,
)
from outages.standards.relay import (  # noqa: F401
    reconnections_evaluate,
    reconnections_recent,
    standards_evaluate_reconnection,
    wrongful_disconnection_detect,
    wrongful_disconnection_record,
)
