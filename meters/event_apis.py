"""The head-end's meter events: POST /api/v1/headend/events/ (meters.events does the work)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from meters import events
from meters.apis import RawBodyParser
from meters.auth import ServiceTokenAuthentication
from meters.models import MeterEvent


class EventInput(serializers.Serializer):
    """One event: `kind` or `code` (or both, naming the same event)."""

    meter = serializers.CharField(max_length=40, help_text="The meter's serial.")
    kind = serializers.ChoiceField(
        choices=MeterEvent.Kind.values, required=False, help_text="What happened."
    )
    code = serializers.ChoiceField(
        choices=sorted(events.CODES),
        required=False,
        help_text="The IEC 61968-9 EndDeviceEventType the head-end sends for it "
        "(docs/events.md lists which kind each names).",
    )
    occurred_at = serializers.DateTimeField(
        help_text="When the meter says it happened, with its UTC offset; at most 2 minutes "
        "ahead of our clock, not before the meter's installation."
    )
    id = serializers.CharField(
        required=False,
        min_length=1,
        max_length=events.EXTERNAL_ID_MAX,
        help_text="The head-end's id of the event: sent again, it is stored once.",
    )
    off_since = serializers.DateTimeField(
        required=False,
        help_text="On a power_on only: when the meter's own record says its supply failed "
        "(before occurred_at). Makes the supply period when no power_off reached us.",
    )
    details = serializers.DictField(
        required=False,
        help_text=f"What came with it (load_kw …): at most {events.DETAILS_MAX_BYTES} bytes.",
    )


class EventsBatchInput(serializers.Serializer):
    batch_id = serializers.CharField(
        required=False, max_length=100, help_text="The head-end's own id of the batch."
    )
    events = EventInput(
        many=True, help_text=f"1 to {events.MAX_EVENTS:,} events; more is refused with 413."
    )


class EventRejectionSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The event's position in `events`, from 0.")
    meter = serializers.CharField(help_text="As sent.")
    kind = serializers.CharField(help_text="The kind or code as sent.")
    occurred_at = serializers.CharField(help_text="As sent.")
    reason = serializers.CharField(
        help_text="unknown_meter, unknown_kind, conflicting_kind, bad_timestamp, out_of_range, "
        "in_future, before_installation, meter_removed, duplicate_in_batch, "
        "restore_without_failure, bad_off_since, malformed."
    )
    message = serializers.CharField()


class EventsResultSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField()
    events = serializers.IntegerField(help_text="Events in the batch.")
    stored = serializers.IntegerField(help_text="Stored for the first time.")
    duplicates = serializers.IntegerField(help_text="Stored before: nothing changed.")
    rejected = serializers.IntegerField()
    rejections = EventRejectionSerializer(many=True, help_text="The first 1,000, by index.")


class EventsIngestApi(APIView):
    """Batches of meter events from the utility's head-end system.

    `{"batch_id": "...", "events": [{"meter", "kind" or "code", "occurred_at", "id",
    "off_since", "details"}]}`. Good events are stored and bad ones listed with their reason;
    nothing of a batch is half-written. An event stored before (the same meter and id, or the
    same meter, kind and time) is counted in `duplicates` and changes nothing; late and
    out-of-order events are placed in time.
    """

    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [RawBodyParser]

    @extend_schema(
        request={"application/json": EventsBatchInput},
        responses={200: EventsResultSerializer},
    )
    def post(self, request):
        token = request.user
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return Response(
                {
                    "error": {
                        "code": "unsupported_media_type",
                        "message": "Send application/json.",
                        "fields": {},
                    }
                },
                status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            )
        # An empty body reaches no parser: DRF gives an empty form instead of bytes.
        body = request.data if isinstance(request.data, bytes) else b""
        batch = events.events_body_parse(body)
        if not batch["events"]:
            raise DomainError("The batch holds no events.", code="empty_batch")
        result = events.events_ingest(utility=token.utility, token=token, **batch)
        if result.accepted == 0:
            raise DomainError(
                "Every event in the batch was refused; see rejections.",
                code="all_rejected",
                extra={
                    "rejections": [r.as_dict() for r in result.rejections],
                    "batch_id": result.batch_id,
                },
            )
        return Response(
            {
                "batch_id": result.batch_id,
                "events": result.events,
                "stored": result.stored,
                "duplicates": result.duplicates,
                "rejected": result.rejected,
                "rejections": [r.as_dict() for r in result.rejections],
            }
        )
