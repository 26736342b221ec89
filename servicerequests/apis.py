from __future__ import annotations

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_get_for_user
from core.http import BoundedLimitOffsetPagination, content_length
from core.money import money_digits
from core.schema import refuses
from outages.models import Outage
from servicerequests import attachments, estimates, outage_reports, selectors, services
from servicerequests.models import ServiceRequest


def _money(value, utility) -> str | None:
    if value is None:
        return None
    return money_digits(value, minor_unit=utility.currency_minor_unit)


def _local(value, zone) -> str | None:
    return value.astimezone(zone).isoformat() if value else None


def _language(context) -> str:
    return getattr(context.get("user"), "language", "en") or "en"


class FieldSpecSerializer(serializers.Serializer):
    """One field of a request type's form (services.details_validate checks details against it)."""

    name = serializers.CharField()
    type = serializers.ChoiceField(
        choices=["text", "choice", "integer", "decimal", "date", "boolean"], required=False
    )
    required = serializers.BooleanField(required=False)
    choices = serializers.ListField(child=serializers.CharField(), required=False)
    label = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="By language: en, ar, hi."
    )
    max_length = serializers.IntegerField(required=False)
    min = serializers.DecimalField(max_digits=20, decimal_places=6, required=False)
    max = serializers.DecimalField(max_digits=20, decimal_places=6, required=False)


class RequestTypeSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.SerializerMethodField()
    fields = FieldSpecSerializer(many=True, help_text="The form's fields, in order.")
    takes_estimate = serializers.BooleanField()
    regulated = serializers.SerializerMethodField()
    max_attachments = serializers.IntegerField()

    def get_name(self, obj) -> str:
        return obj.name_in(_language(self.context))

    def get_regulated(self, obj) -> bool:
        return bool(obj.standard)


class AttachmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="original_name")
    content_type = serializers.CharField()
    size = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField()

    def get_url(self, obj) -> str:
        return f"/api/v1/service-requests/{obj.request_id}/attachments/{obj.pk}/"


class EstimateSerializer(serializers.Serializer):
    amount = serializers.CharField()
    currency = serializers.CharField()
    note = serializers.CharField()
    issued_at = serializers.DateTimeField(allow_null=True)
    payable = serializers.BooleanField()
    payment_status = serializers.CharField(allow_null=True)
    paid_at = serializers.DateTimeField(allow_null=True)


class TimelineEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    from_status = serializers.CharField(allow_null=True)
    to_status = serializers.CharField(allow_null=True)
    status_label = serializers.CharField(allow_null=True)
    text = serializers.CharField(allow_blank=True)
    by = serializers.ChoiceField(choices=["staff", "you", "consumer"])


class RequestSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    account_id = serializers.IntegerField()
    consumer_id = serializers.CharField(source="account.consumer_id")
    type = serializers.CharField(source="type.code")
    type_name = serializers.SerializerMethodField()
    status = serializers.CharField()
    status_label = serializers.SerializerMethodField()
    created_at = serializers.SerializerMethodField()
    deadline_at = serializers.SerializerMethodField(
        help_text="End of the last working day allowed (for a type counted in hours, that many "
        "hours from submission), local time."
    )
    overdue = serializers.SerializerMethodField()
    estimate = serializers.SerializerMethodField()

    def get_type_name(self, obj) -> str:
        return obj.type.name_in(_language(self.context))

    def get_status_label(self, obj) -> str:
        return services.status_label(obj.status, _language(self.context))

    def get_created_at(self, obj) -> str:
        return _local(obj.created_at, obj.utility.zone)

    def get_deadline_at(self, obj) -> str | None:
        return _local(obj.deadline_at, obj.utility.zone)

    def get_overdue(self, obj) -> bool:
        return obj.is_overdue()

    @extend_schema_field(EstimateSerializer(allow_null=True))
    def get_estimate(self, obj) -> dict | None:
        if obj.estimate_amount is None:
            return None
        return {
            "amount": _money(obj.estimate_amount, obj.utility),
            "currency": obj.utility.currency,
            "note": obj.estimate_note,
            "issued_at": _local(obj.estimate_issued_at, obj.utility.zone),
            "payable": obj.status == ServiceRequest.Status.ESTIMATE_ISSUED,
            "payment_status": obj.estimate_topup.status if obj.estimate_topup else None,
            "paid_at": _local(obj.paid_at, obj.utility.zone),
        }


DETAILS_SCHEMA = {
    "type": "object",
    "description": "By field name of the request type's form: text, a choice, a number, a date "
    "(YYYY-MM-DD) or true/false.",
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
    },
}


@extend_schema_field(DETAILS_SCHEMA)
class DetailsField(serializers.JSONField):
    pass


class RequestDetailSerializer(RequestSerializer):
    details = DetailsField()
    description = serializers.CharField()
    deadline_working_days = serializers.IntegerField(allow_null=True)
    clock_started_at = serializers.SerializerMethodField()
    completed_at = serializers.SerializerMethodField()
    timezone = serializers.CharField(source="utility.timezone")
    timeline = serializers.SerializerMethodField()
    attachments = serializers.SerializerMethodField()

    def get_clock_started_at(self, obj) -> str | None:
        return _local(obj.clock_started_at, obj.utility.zone)

    def get_completed_at(self, obj) -> str | None:
        return _local(obj.completed_at, obj.utility.zone)

    @extend_schema_field(TimelineEventSerializer(many=True))
    def get_timeline(self, obj) -> list[dict]:
        language = _language(self.context)
        user = self.context.get("user")
        return [
            {
                "at": _local(event.at, obj.utility.zone),
                "kind": event.kind,
                "from_status": event.from_status or None,
                "to_status": event.to_status or None,
                "status_label": services.status_label(event.to_status, language)
                if event.to_status
                else None,
                "text": event.text,
                "by": "staff"
                if event.by_staff
                else ("you" if user is not None and event.actor_id == user.pk else "consumer"),
            }
            for event in selectors.request_timeline(request=obj)
        ]

    @extend_schema_field(AttachmentSerializer(many=True))
    def get_attachments(self, obj) -> list[dict]:
        return [AttachmentSerializer(a).data for a in obj.attachments.all()]


def _detail(request, obj, code=200) -> Response:
    obj = selectors.request_get_for_user(user=request.user, request_id=obj.pk)
    return Response(RequestDetailSerializer(obj, context={"user": request.user}).data, status=code)


# --- Per account: what can be asked, and whom to call -------------------------------------------


class RequestTypeListApi(APIView):
    @extend_schema(
        responses=RequestTypeSerializer(many=True),
        summary="Service requests this account's utility takes online, with their fields",
    )
    def get(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id)
        types = selectors.request_types_for_account(account=account)
        return Response(
            RequestTypeSerializer(types, many=True, context={"user": request.user}).data
        )


class OpeningHoursSerializer(serializers.Serializer):
    weekday = serializers.IntegerField(min_value=0, max_value=6, help_text="0 is Monday.")
    opens = serializers.RegexField(r"^\d{2}:\d{2}$", help_text="Local time.")
    closes = serializers.RegexField(r"^\d{2}:\d{2}$", help_text="Local time.")


class HelplineSerializer(serializers.Serializer):
    utility = serializers.CharField()
    name = serializers.CharField()
    helpline = serializers.CharField()
    timezone = serializers.CharField()
    open_now = serializers.BooleanField()
    public_holiday_today = serializers.BooleanField()
    opening_hours = OpeningHoursSerializer(many=True)


class HelplineApi(APIView):
    @extend_schema(responses=HelplineSerializer, summary="The utility's helpline and opening hours")
    def get(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id)
        return Response(selectors.helpline_for_account(account=account))


# --- Requests -----------------------------------------------------------------------------------


class RequestListApi(APIView):
    pagination_class = BoundedLimitOffsetPagination

    class ListQuery(serializers.Serializer):
        account = serializers.IntegerField(required=False)
        status = serializers.ChoiceField(choices=ServiceRequest.Status.choices, required=False)

    class CreateInput(serializers.Serializer):
        account = serializers.IntegerField()
        type = serializers.CharField(max_length=40)
        details = DetailsField(required=False, default=dict)
        description = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=services.TEXT_MAX
        )

    @extend_schema(
        parameters=[ListQuery],
        responses=RequestSerializer(many=True),
        summary="My service requests and complaints, newest first",
    )
    def get(self, request):
        query = self.ListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.requests_for_user(
            user=request.user,
            account_id=query.validated_data.get("account"),
            status=query.validated_data.get("status"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(
            RequestSerializer(page, many=True, context={"user": request.user}).data
        )

    @extend_schema(
        request=CreateInput,
        responses={201: RequestDetailSerializer},
        summary="Open a service request or file a complaint",
        description="`details` must fill the form of the request type "
        "(GET /accounts/{id}/service-request-types/).",
    )
    @refuses(404, 409)
    def post(self, request):
        data = self.CreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.request_create(
            user=request.user,
            account_id=data.validated_data["account"],
            type_code=data.validated_data["type"],
            details=data.validated_data["details"],
            description=data.validated_data["description"],
        )
        return _detail(request, created, code=status.HTTP_201_CREATED)


class RequestDetailApi(APIView):
    @extend_schema(
        responses=RequestDetailSerializer,
        summary="One request: status, deadline, estimate, timeline and attachments",
    )
    def get(self, request, request_id: int):
        obj = selectors.request_get_for_user(user=request.user, request_id=request_id)
        return Response(RequestDetailSerializer(obj, context={"user": request.user}).data)


class TextInput(serializers.Serializer):
    text = serializers.CharField(max_length=services.TEXT_MAX)


class CommentApi(APIView):
    @extend_schema(
        request=TextInput, responses={201: RequestDetailSerializer}, summary="Add a comment"
    )
    @refuses(409)
    def post(self, request, request_id: int):
        obj = selectors.request_get_for_user(user=request.user, request_id=request_id, acting=True)
        data = TextInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.request_comment_add(
            user=request.user, request=obj, text=data.validated_data["text"]
        )
        return _detail(request, obj, code=status.HTTP_201_CREATED)


class CancelApi(APIView):
    class CancelInput(serializers.Serializer):
        reason = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=services.TEXT_MAX
        )

    @extend_schema(
        request=CancelInput,
        responses=RequestDetailSerializer,
        summary="Cancel a request that is still open and unpaid",
    )
    @refuses(409)
    def post(self, request, request_id: int):
        obj = selectors.request_get_for_user(user=request.user, request_id=request_id, acting=True)
        data = self.CancelInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.request_cancel(
            user=request.user, request=obj, reason=data.validated_data["reason"]
        )
        return _detail(request, obj)


class EstimatePayApi(APIView):
    EstimatePaymentStarted = inline_serializer(
        "EstimatePaymentStarted",
        {
            "topup_id": serializers.UUIDField(),
            "amount": serializers.CharField(),
            "currency": serializers.CharField(),
            "status": serializers.CharField(),
            "payment_url": serializers.URLField(),
        },
    )

    @extend_schema(
        request=None,
        responses={201: EstimatePaymentStarted, 200: EstimatePaymentStarted},
        summary="Pay the cost estimate: returns the hosted payment page (again, while pending)",
        description="201: a payment started; 200: the one still pending, again.",
    )
    @refuses(409)
    def post(self, request, request_id: int):
        obj = selectors.request_get_for_user(user=request.user, request_id=request_id, acting=True)
        topup, url, created = estimates.estimate_pay_start(request=obj, user=request.user)
        return Response(
            {
                "topup_id": str(topup.pk),
                "amount": _money(topup.amount, obj.utility),
                "currency": topup.currency,
                "status": topup.status,
                "payment_url": url,
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AttachmentListApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        responses={201: AttachmentSerializer},
        summary="Attach a photo (JPEG, PNG) or a PDF document",
    )
    @refuses(409)
    def post(self, request, request_id: int):
        obj = selectors.request_get_for_user(user=request.user, request_id=request_id, acting=True)
        # Refuse an oversize body before it is read and spooled to disk.
        # A malformed header reads as 0: the upload's own size check still holds.
        if content_length(request) > settings.SERVICE_REQUEST_ATTACHMENT_MAX_BYTES + 64 * 1024:
            raise attachments.too_large()
        attachment = attachments.attachment_add(
            user=request.user, request=obj, upload=request.FILES.get("file")
        )
        return Response(AttachmentSerializer(attachment).data, status=status.HTTP_201_CREATED)


class AttachmentDownloadApi(APIView):
    @extend_schema(
        responses={
            (200, "image/jpeg"): bytes,
            (200, "image/png"): bytes,
            (200, "application/pdf"): bytes,
        },
        summary="Download",
    )
    def get(self, request, request_id: int, attachment_id: int):
        attachment = selectors.attachment_get_for_user(
            user=request.user, request_id=request_id, attachment_id=attachment_id
        )
        return attachment_response(attachment)


def attachment_response(attachment) -> FileResponse:
    response = FileResponse(
        attachment.file.open("rb"),
        content_type=attachment.content_type,
        as_attachment=True,
        filename=attachment.original_name,
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


# --- "My power is off" ----------------------------------------------------------------------------


class ReportedOutageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Outage.Kind.choices)
    source = serializers.ChoiceField(
        choices=Outage.Source.choices, help_text="meters: detected from the meters' own reports."
    )
    reason = serializers.CharField()
    started_at = serializers.DateTimeField(help_text="Local time with offset.")
    estimated_restoration = serializers.DateTimeField(help_text="Local time with offset.")


class FaultRequestSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The service request (GET /service-requests/{id}/).")
    deadline = serializers.DateTimeField(allow_null=True, help_text="Local time with offset.")


class OutageReportSerializer(serializers.Serializer):
    report = serializers.IntegerField(source="pk")
    status = serializers.SerializerMethodField(
        help_text="known_outage: attached to an outage we already know of; fault_reported: a "
        "no-supply service request was opened (or is still open) for the account."
    )
    created_at = serializers.SerializerMethodField()
    outage = serializers.SerializerMethodField()
    service_request = serializers.SerializerMethodField()
    message = serializers.SerializerMethodField(help_text="For the consumer, in their language.")

    @extend_schema_field(serializers.ChoiceField(choices=["known_outage", "fault_reported"]))
    def get_status(self, obj) -> str:
        return outage_reports.report_status(obj)

    @extend_schema_field(serializers.DateTimeField())
    def get_created_at(self, obj) -> str:
        return _local(obj.created_at, obj.account.utility.zone)

    @extend_schema_field(ReportedOutageSerializer(allow_null=True))
    def get_outage(self, obj) -> dict | None:
        outage = obj.outage
        if outage is None:
            return None
        zone = outage.utility.zone
        return {
            "id": outage.pk,
            "kind": outage.kind,
            "source": outage.source,
            "reason": outage.reason,
            "started_at": _local(outage.actual_start or outage.planned_start, zone),
            "estimated_restoration": _local(outage.planned_end, zone),
        }

    @extend_schema_field(FaultRequestSerializer(allow_null=True))
    def get_service_request(self, obj) -> dict | None:
        request = obj.service_request
        if request is None:
            return None
        return {"id": request.pk, "deadline": _local(request.deadline_at, request.utility.zone)}

    def get_message(self, obj) -> str:
        return outage_reports.report_message(report=obj, language=_language(self.context))


class OutageReportListApi(APIView):
    pagination_class = BoundedLimitOffsetPagination

    class ReportInput(serializers.Serializer):
        note = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=services.TEXT_MAX,
            help_text="Anything the crew should know; kept on the service request if one opens.",
        )

    @extend_schema(
        request=ReportInput,
        responses={201: OutageReportSerializer, 200: OutageReportSerializer},
        summary="Report that the power is off at this account",
        description="Attached to the outage already known at the account's meter, or else a "
        "no-supply service request with its deadline. 201: a report was filed; 200: the account "
        "already reported this outage, or its no-supply request is still open: that report again.",
    )
    @refuses(409)
    def post(self, request, account_id: int):
        data = self.ReportInput(data=request.data)
        data.is_valid(raise_exception=True)
        filed = outage_reports.outage_report_create(
            user=request.user, account_id=account_id, note=data.validated_data["note"]
        )
        return Response(
            OutageReportSerializer(filed.report, context={"user": request.user}).data,
            status=status.HTTP_201_CREATED if filed.created else status.HTTP_200_OK,
        )

    @extend_schema(
        responses=OutageReportSerializer(many=True),
        summary="This account's reports that the power was off, newest first",
    )
    def get(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.outage_reports_for_account(account=account), request, view=self
        )
        return paginator.get_paginated_response(
            OutageReportSerializer(page, many=True, context={"user": request.user}).data
        )
