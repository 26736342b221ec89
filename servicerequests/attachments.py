"""Photos and documents attached to a service request: type by the file's own bytes (JPEG, PNG,
PDF), size within SERVICE_REQUEST_ATTACHMENT_MAX_BYTES, stored with Django's default storage."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from rest_framework import status

from accounts.models import User
from core.errors import Conflict, DomainError
from servicerequests.models import Attachment, RequestEvent, ServiceRequest
from servicerequests.services import CLOSED, _event, _locked

logger = logging.getLogger(__name__)

# Magic numbers: what the file is, whatever the client called it.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)


class AttachmentTooLarge(DomainError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "attachment_too_large"


class AttachmentTypeRefused(DomainError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    code = "attachment_type_not_allowed"


def too_large() -> AttachmentTooLarge:
    limit = settings.SERVICE_REQUEST_ATTACHMENT_MAX_BYTES
    return AttachmentTooLarge(
        f"An attachment may be at most {limit // 1024} KiB.",
        fields={"file": [{"code": "attachment_too_large", "message": "The file is too large."}]},
    )


def content_type_sniff(head: bytes) -> str | None:
    for magic, content_type in SIGNATURES:
        if head.startswith(magic):
            return content_type
    return None


def attachment_add(
    *, user: User, request: ServiceRequest, upload: UploadedFile | None
) -> Attachment:
    """Check the file, store it, and add it to the request's timeline.

    1. Size and type first (nothing is stored for a refused file).
    2. The request is locked while its attachments are counted against the type's limit.
    3. If the row cannot be written, the stored file is removed again.
    """
    if upload is None:
        raise DomainError.for_field("file", "Attach a file.", code="required")
    if upload.size > settings.SERVICE_REQUEST_ATTACHMENT_MAX_BYTES:
        raise too_large()
    upload.seek(0)
    content_type = content_type_sniff(upload.read(8))
    upload.seek(0)
    if content_type is None:
        raise AttachmentTypeRefused(
            "Attach a photo (JPEG or PNG) or a PDF document.",
            fields={
                "file": [
                    {"code": "attachment_type_not_allowed", "message": "Not a JPEG, PNG or PDF."}
                ]
            },
        )
    name = (upload.name or "attachment")[-200:]
    with transaction.atomic():
        request = _locked(request.pk)
        if request.status in CLOSED:
            raise Conflict("This request is closed.", code="request_closed")
        if request.attachments.count() >= request.type.max_attachments:
            raise Conflict(
                f"A request of this type takes at most {request.type.max_attachments} attachments.",
                code="too_many_attachments",
            )
        attachment = Attachment(
            request=request,
            content_type=content_type,
            size=upload.size,
            original_name=name,
            uploaded_by=user,
        )
        attachment.file.save(name, upload, save=False)
        try:
            attachment.save()
            _event(request, RequestEvent.Kind.ATTACHMENT, actor=user, text=name)
        except Exception:
            attachment.file.delete(save=False)
            raise
    return attachment
