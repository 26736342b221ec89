"""Celery task outcomes, counted in whichever process runs the task (a worker's pool process,
or the caller itself when tasks run eagerly): the files of the multiprocess mode carry them to
the web's scrape. Task names are the registered tasks': a bounded label."""

from __future__ import annotations

from celery import signals

from core.metrics.registry import CELERY_TASKS


def _name(sender) -> str:
    return getattr(sender, "name", None) or str(sender)


@signals.task_success.connect(weak=False)
def _succeeded(sender=None, **kwargs) -> None:
    CELERY_TASKS.labels(_name(sender), "succeeded").inc()


@signals.task_failure.connect(weak=False)
def _failed(sender=None, **kwargs) -> None:
    CELERY_TASKS.labels(_name(sender), "failed").inc()


@signals.task_retry.connect(weak=False)
def _retried(sender=None, **kwargs) -> None:
    CELERY_TASKS.labels(_name(sender), "retried").inc()
