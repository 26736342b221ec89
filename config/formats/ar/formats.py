# T is the zone's abbreviation or offset (EET, EEST, IST, +03, UTC) of the zone the time is shown
# in: the row's utility, the staff member's one zone, or UTC, named either way.
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
# A time of day alone (opening hours, quiet hours) is a wall-clock time: 24 hours, no a.m./p.m.
TIME_FORMAT = "H:i"
