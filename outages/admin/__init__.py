"""The outage desk: plan outages by choosing their grid from a tree, preview what consumers read,
publish, reschedule, cancel, start and restore them; the guaranteed standards, compensation and
force-majeure exemptions. Every time shown is the utility's local time with its zone.

- outage.py: the outage list and form (the grid tree: tree.py; the forms: forms.py)
- views.py: the step pages (preview and publish, reschedule, cancel, start, restore)
- standards.py: policies, reminder schedules, compensations, exemptions, wrongful disconnections
Queries live in outages/selectors.py.
"""

from outages.admin import outage, standards  # noqa: F401 - importing registers the admins
