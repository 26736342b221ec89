"""Photos and documents on a request: checked by their bytes and size, seen by the owner and staff."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from servicerequests.models import Attachment, RequestEvent, ServiceRequest
from tests.accounts.factories import UserFactory
from tests.servicerequests.factories import (
    ServiceRequestFactory,
    consumer,
    kuwait,
    saudi,
    support_staff,
)

pytestmark = pytest.mark.django_db
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PDF = b"%PDF-1.7\n" + b"0" * 200


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def owned():
    user, account = consumer(saudi())
    return user, ServiceRequestFactory(account=account)


def upload(api, request, content: bytes, name: str = "meter.jpg", content_type="image/jpeg"):
    return api.client.post(
        f"/api/v1/service-requests/{request.pk}/attachments/",
        {"file": SimpleUploadedFile(name, content, content_type=content_type)},
        format="multipart",
    )


@pytest.mark.parametrize(
    ("content", "name", "kind"),
    [
        (JPEG, "meter.jpg", "image/jpeg"),
        (PNG, "seal.png", "image/png"),
        (PDF, "deed.pdf", "application/pdf"),
    ],
)
def test_a_photo_or_document_is_attached_and_downloaded(make_api, owned, content, name, kind):
    user, request = owned
    api = make_api(user)

    response = upload(api, request, content, name=name, content_type="application/octet-stream")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["content_type"] == kind and body["name"] == name and body["size"] == len(content)
    download = api.get(body["url"])
    assert download.status_code == 200 and download["Content-Type"] == kind
    assert b"".join(download.streaming_content) == content
    detail = api.get(f"/api/v1/service-requests/{request.pk}/").json()
    assert detail["attachments"][0]["id"] == body["id"]
    assert detail["timeline"][-1]["kind"] == "attachment"


@pytest.mark.parametrize(
    ("content", "name", "claimed"),
    [
        (b"MZ\x90\x00 this is a program", "photo.jpg", "image/jpeg"),
        (b"<html><script>alert(1)</script>", "scan.pdf", "application/pdf"),
        (b"GIF89a" + b"\x00" * 20, "anim.gif", "image/gif"),
    ],
)
def test_files_that_are_not_what_we_accept_are_refused(
    make_api, owned, media, content, name, claimed
):
    user, request = owned
    response = upload(make_api(user), request, content, name=name, content_type=claimed)

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "attachment_type_not_allowed"
    assert not Attachment.objects.exists() and not RequestEvent.objects.exists()
    assert not any(media.rglob("*.*"))


def test_an_oversize_file_is_refused(make_api, owned, settings, media):
    settings.SERVICE_REQUEST_ATTACHMENT_MAX_BYTES = 1024
    user, request = owned
    response = upload(make_api(user), request, JPEG + b"\x00" * 2048)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "attachment_too_large"
    assert not Attachment.objects.exists() and not any(media.rglob("*.*"))


def test_a_missing_file_is_a_clear_400(make_api, owned):
    user, request = owned
    response = make_api(user).client.post(
        f"/api/v1/service-requests/{request.pk}/attachments/", {}, format="multipart"
    )
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]


def test_the_types_limit_and_closed_requests_are_respected(make_api, owned):
    user, request = owned
    request.type.max_attachments = 1
    request.type.save()
    api = make_api(user)
    assert upload(api, request, JPEG).status_code == 201
    second = upload(api, request, PNG, name="two.png")
    assert second.status_code == 409 and second.json()["error"]["code"] == "too_many_attachments"
    ServiceRequest.objects.filter(pk=request.pk).update(status="completed")
    request.type.max_attachments = 5
    request.type.save()
    closed = upload(api, request, PNG, name="three.png")
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "request_closed"
    assert Attachment.objects.count() == 1


class TestOwnership:
    def test_uploading(self, make_api, owned):
        user, request = owned
        for intruder in (UserFactory(), support_staff(request.utility)):
            response = upload(make_api(intruder), request, JPEG)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "request_not_found"
        assert upload(make_api(), request, JPEG).status_code == 401
        assert not Attachment.objects.exists()
        assert upload(make_api(user), request, JPEG).status_code == 201

    def test_downloading(self, make_api, owned, client):
        user, request = owned
        url = upload(make_api(user), request, PDF, name="deed.pdf").json()["url"]
        attachment = Attachment.objects.get()
        for intruder in (UserFactory(), support_staff(request.utility)):
            response = make_api(intruder).get(url)
            assert response.status_code == 404
        assert make_api().get(url).status_code == 401
        assert make_api(user).get(url).status_code == 200
        wrong = f"/api/v1/service-requests/{request.pk}/attachments/{attachment.pk + 1}/"
        assert make_api(user).get(wrong).json()["error"]["code"] == "attachment_not_found"

        # Staff download in the admin, and only for their own utility.
        admin_url = (
            f"/admin/servicerequests/servicerequest/{request.pk}/attachments/{attachment.pk}/"
        )
        client.force_login(support_staff(request.utility))
        response = client.get(admin_url)
        assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
        client.force_login(support_staff(kuwait()))
        assert client.get(admin_url).status_code == 404
        client.logout()
        assert client.get(admin_url).status_code == 302  # to the admin login
