"""Format modules (FORMAT_MODULE_PATH): how the admin and templates write dates and times in each
language we speak. Every date-time carries its zone ("2026-12-01 04:41 +03", "… EEST"), so a UTC
time can never pass for a local one; it matches core.timebuckets.moment_text. Anything not set
here falls back to Django's own locale formats."""
