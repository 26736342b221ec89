from __future__ import annotations

import hashlib
from datetime import datetime

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import authentication, exceptions, serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import account_get_for_user
from billing import payments, selectors
from billing.apis.forecast import RunoutSerializer
from billing.gateway import GATEWAYS
from billing.models import LedgerEntry, PaymentPartner, TopUp
from core.errors import DomainError, NotFound
from core.http import BoundedLimitOffsetPagination
from core.money import money_digits
from core.schema import MOMENT_PATTERN, idempotency_key_header, refuses
from core.timebuckets import local_moment_parse


def _money(value, account) -> str:
    return money_digits(value, minor_unit=account.utility.currency_minor_unit)


# Amounts travel as strings in the currency's own decimals ("1.500" KWD); at least the utility's
# minimum top-up (GET /utilities/), at most its cap.
AMOUNT_HELP = (
    "A string in the currency's decimals: \"1.500\" (KWD). At least the utility's minimum top-up "
    "and at most its cap. Numbers are accepted too."
)
AMOUNT_PATTERN = r"^\d{1,10}(\.\d{1,3})?$"


@extend_schema_field({"type": "string", "pattern": AMOUNT_PATTERN, "maxLength": 32})
class AmountField(serializers.CharField):
    """Documented by its pattern; refused by the service (payments.topup_amount_check), whose
    codes say why: too_many_decimals, amount_not_positive, amount_too_large, invalid_amount."""


class AmountInput(serializers.Serializer):
    """An input with an `amount`: a JSON number is read as its text, so that the service sees
    the digits the client sent (1.5, not a float's 1.4999…) and refuses them by its own codes."""

    def to_internal_value(self, data):
        if isinstance(data, dict) and not isinstance(data.get("amount"), (str, type(None))):
            data = {**data, "amount": str(data["amount"])}
        return super().to_internal_value(data)


# --- Consumers ----------------------------------------------------------------------------------


class LastPaymentSerializer(serializers.Serializer):
    amount = serializers.CharField()
    at = serializers.DateTimeField()
    channel = serializers.CharField()


class EmergencyCreditSerializer(serializers.Serializer):
    limit = serializers.CharField()
    available = serializers.CharField()
    in_use = serializers.BooleanField()


class HeldEnergySerializer(serializers.Serializer):
    day = serializers.DateField(help_text="The local day.")
    amount = serializers.CharField(help_text="Charged so far (negative), already in the balance.")
    kwh = serializers.CharField()


class PrepaidBalanceSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    consumer_id = serializers.CharField()
    payment_mode = serializers.ChoiceField(choices=["prepaid"])
    balance = serializers.CharField(help_text="In the currency's decimals; below 0 on credit.")
    currency = serializers.CharField()
    as_of = serializers.DateTimeField()
    last_topup = LastPaymentSerializer(allow_null=True)
    average_daily_spend = serializers.CharField(allow_null=True)
    weekday_daily_spend = serializers.CharField(allow_null=True)
    weekend_daily_spend = serializers.CharField(allow_null=True)
    projected_days_left = serializers.CharField(
        allow_null=True, help_text="Days, one decimal; null without spending to project."
    )
    depletion_date = serializers.DateField(allow_null=True)
    emergency_credit = EmergencyCreditSerializer()
    debt = serializers.CharField()
    open_energy_day = HeldEnergySerializer(
        allow_null=True,
        help_text="The newest local day's energy charge: in the balance already, and posted to the "
        "statement as one entry when the day ends (null when none is held).",
    )
    runout = RunoutSerializer(
        allow_null=True,
        help_text="The run-out forecast that knows the calendar (GET .../forecast/ gives it "
        "with the pace); null without spending to project.",
    )
    payment_code = serializers.CharField(help_text="What a payment network is told to pay into.")


class OpenBillSerializer(serializers.Serializer):
    month = serializers.RegexField(r"^\d{4}-\d{2}$")
    amount = serializers.CharField()
    fine = serializers.CharField()
    paid = serializers.CharField()
    unpaid = serializers.CharField()
    due_date = serializers.DateField()
    overdue = serializers.BooleanField()


class PostpaidBalanceSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    consumer_id = serializers.CharField()
    payment_mode = serializers.ChoiceField(choices=["postpaid"])
    currency = serializers.CharField()
    as_of = serializers.DateTimeField()
    amount_due = serializers.CharField()
    overdue = serializers.CharField()
    next_due_date = serializers.DateField(allow_null=True)
    credit = serializers.CharField(help_text="Paid ahead of the bills: taken off the next one.")
    open_bills = OpenBillSerializer(many=True)
    last_payment = LastPaymentSerializer(allow_null=True)
    debt = serializers.CharField()
    payment_code = serializers.CharField(help_text="What a payment network is told to pay into.")


class BalanceApi(APIView):
    @extend_schema(
        responses=PolymorphicProxySerializer(
            component_name="Balance",
            serializers={
                "prepaid": PrepaidBalanceSerializer,
                "postpaid": PostpaidBalanceSerializer,
            },
            resource_type_field_name="payment_mode",
        ),
        summary="Balance, and how long it will last",
    )
    def get(self, request, account_id: int):
        account = selectors.balance_account_get(user=request.user, account_id=account_id)
        body = selectors.balance_summary(account=account)
        body["payment_code"] = payments.payment_code_for(account)
        return Response(body)


class LocalMoment(serializers.DateTimeField):
    """A moment in the account's utility zone, with its offset: a statement's periods are local
    days (2026-11-24T00:00:00+03:00 to 2026-11-25T00:00:00+03:00), never UTC ones."""

    def get_attribute(self, instance):
        value = super().get_attribute(instance)
        return None if value is None else value.astimezone(instance.account.utility.zone)

    def to_representation(self, value):
        return None if value is None else value.isoformat()


class EntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    description = serializers.CharField()
    amount = serializers.SerializerMethodField()
    balance_after = serializers.SerializerMethodField()
    created_at = LocalMoment()
    period_start = LocalMoment(allow_null=True)
    period_end = LocalMoment(allow_null=True)
    kwh = serializers.DecimalField(max_digits=14, decimal_places=3, allow_null=True)
    rate = serializers.DecimalField(max_digits=12, decimal_places=6, allow_null=True)
    reason = serializers.CharField()

    def get_amount(self, entry) -> str:
        return _money(entry.amount, entry.account)

    def get_balance_after(self, entry) -> str:
        return _money(entry.balance_after, entry.account)


def _moment(raw: str | None, zone, field: str) -> datetime | None:
    return local_moment_parse(raw, zone, field=field) if raw else None


class StatementApi(APIView):
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "kind",
                str,
                many=True,
                enum=LedgerEntry.Kind.values,
                description="Entry kinds to keep (repeatable).",
            ),
            OpenApiParameter(
                "period_from",
                str,
                pattern=MOMENT_PATTERN,
                description="Local date (2026-11-01) or ISO time (without an offset: local).",
            ),
            OpenApiParameter(
                "period_to",
                str,
                pattern=MOMENT_PATTERN,
                description="Exclusive end, after period_from: local date or ISO time.",
            ),
        ],
        responses=EntrySerializer(many=True),
        summary="Statement: every movement with its running balance, newest first",
    )
    def get(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id)
        zone = account.utility.zone
        start = _moment(request.query_params.get("period_from"), zone, "period_from")
        end = _moment(request.query_params.get("period_to"), zone, "period_to")
        if start and end and end <= start:
            raise DomainError("period_to must be after period_from.", code="period_reversed")
        entries = selectors.statement(
            account=account,
            kinds=request.query_params.getlist("kind") or None,
            start=start,
            end=end,
        ).select_related("account__utility")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(EntrySerializer(page, many=True).data)


class TopUpSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    channel = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    receipt_number = serializers.CharField(allow_null=True, help_text="Null until paid.")

    def get_amount(self, topup) -> str:
        return _money(topup.amount, topup.account)


class TopUpListApi(APIView):
    pagination_class = BoundedLimitOffsetPagination

    class TopUpInput(AmountInput):
        amount = AmountField(max_length=32, help_text=AMOUNT_HELP)
        channel = serializers.ChoiceField(choices=[("app", "app"), ("web", "web")], default="app")

    @extend_schema(responses=TopUpSerializer(many=True), summary="Top-up history")
    def get(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.topups_for_account(account=account).select_related("account__utility"),
            request,
            view=self,
        )
        return paginator.get_paginated_response(TopUpSerializer(page, many=True).data)

    @extend_schema(
        request=TopUpInput,
        parameters=[
            idempotency_key_header("One per top-up the user means: a retry sends the same one.")
        ],
        responses={
            201: inline_serializer(
                "TopUpStarted",
                {
                    "topup": TopUpSerializer(),
                    "payment_url": serializers.URLField(
                        allow_null=True,
                        help_text="The hosted payment page while the top-up is pending; "
                        "null once it is settled.",
                    ),
                },
            )
        },
        summary="Top up: returns the hosted payment page; the webhook credits the account",
        description=(
            "A retry with the same Idempotency-Key and body answers the top-up as it is now "
            "(paid, with its receipt, or still pending with its payment page); the same key "
            "with another body is refused."
        ),
    )
    @refuses(409)
    def post(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id, paying=True)
        data = self.TopUpInput(data=request.data)
        data.is_valid(raise_exception=True)

        def answer(topup: TopUp) -> dict:
            url = topup.checkout_url if topup.status == TopUp.Status.PENDING else None
            return {"topup": TopUpSerializer(topup).data, "payment_url": url or None}

        def produce():
            amount = payments.topup_amount_check(account=account, raw=data.validated_data["amount"])
            topup, _url = payments.topup_start(
                account=account,
                amount=amount,
                channel=data.validated_data["channel"],
                user=request.user,
            )
            return 201, answer(topup)

        def replay(code: int, first: dict):
            topup = selectors.topups_for_account(account=account).select_related("account__utility")
            return code, answer(topup.get(pk=first["topup"]["id"]))

        code, body = payments.idempotent(
            user=request.user,
            scope=f"topup:{account.pk}",
            key=request.headers.get("Idempotency-Key", ""),
            fingerprint=payments.request_fingerprint(
                {"account": account.pk, **data.validated_data}
            ),
            produce=produce,
            replay=replay,
        )
        return Response(body, status=code)


class TopUpDetailApi(APIView):
    @extend_schema(responses=TopUpSerializer, summary="One top-up and its receipt")
    def get(self, request, account_id: int, topup_id: str):
        account = account_get_for_user(user=request.user, account_id=account_id)
        topup = (
            selectors.topups_for_account(account=account)
            .filter(pk=topup_id)
            .select_related("account__utility")
            .first()
        )
        if topup is None:
            raise NotFound("You have no such top-up.", code="topup_not_found")
        return Response(TopUpSerializer(topup).data)


class BillSerializer(serializers.Serializer):
    month = serializers.RegexField(r"^\d{4}-\d{2}$")
    kwh = serializers.CharField()
    amount = serializers.CharField()
    fine = serializers.CharField()
    paid = serializers.CharField()
    unpaid = serializers.CharField()
    due_date = serializers.DateField()
    status = serializers.CharField()


class BillListApi(APIView):
    @extend_schema(responses=BillSerializer(many=True), summary="Postpaid bills")
    def get(self, request, account_id: int):
        account = account_get_for_user(user=request.user, account_id=account_id)
        return Response(
            [
                {
                    "month": bill.month.strftime("%Y-%m"),
                    "kwh": f"{bill.kwh:f}",
                    "amount": _money(bill.amount, account),
                    "fine": _money(bill.fine_amount, account),
                    "paid": _money(bill.paid_amount, account),
                    "unpaid": _money(max(bill.unpaid, 0), account),
                    "due_date": bill.due_date,
                    "status": bill.status,
                }
                for bill in selectors.bills_for_account(account=account)
            ]
        )


# --- The gateway's webhook ----------------------------------------------------------------------


class RawBody(BaseParser):
    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read(64 * 1024 + 1) if stream is not None else b""
        if len(data) > 64 * 1024:
            raise DomainError("The event is too large.", code="payload_too_large")
        return data


class WebhookApi(APIView):
    """Signed events from the payment gateway. Only the signature authenticates them."""

    permission_classes = [AllowAny]
    authentication_classes = []
    parser_classes = [RawBody]

    class GatewayEvent(serializers.Serializer):
        """The simulated gateway's event; a real gateway's follows its own documentation."""

        id = serializers.CharField(max_length=100, help_text="Processed once.")
        type = serializers.ChoiceField(choices=["payment.succeeded", "payment.failed"])
        reference = serializers.CharField(help_text="The top-up's gateway reference.")
        amount = serializers.CharField()
        currency = serializers.CharField()

    @extend_schema(
        request={"application/json": GatewayEvent},
        parameters=[
            OpenApiParameter(
                "Sim-Signature",
                str,
                location=OpenApiParameter.HEADER,
                required=True,
                description="t=<unix seconds>,v1=<hex HMAC-SHA256 of `t.body`>: the only "
                "authentication of an event.",
            ),
            OpenApiParameter(
                "gateway",
                str,
                location=OpenApiParameter.PATH,
                enum=sorted(GATEWAYS),
                description="The gateway that sends its events here.",
            ),
        ],
        responses={
            200: inline_serializer(
                "WebhookOutcome",
                {
                    "status": serializers.ChoiceField(
                        choices=["credited", "already_credited", "failed", "duplicate", "ignored"]
                    ),
                    "reason": serializers.CharField(
                        required=False,
                        help_text="Why an event was ignored, e.g. already_succeeded: events "
                        "never move a settled top-up backwards.",
                    ),
                },
            )
        },
        summary="Payment gateway webhook",
    )
    def post(self, request, gateway: str):
        outcome = payments.webhook_receive(
            gateway_name=gateway, body=request.data, meta=request.META
        )
        body = {"status": outcome.status}
        if outcome.reason:
            body["reason"] = outcome.reason
        return Response(body)


# --- Payment networks (payment codes) -------------------------------------------------------------


class PartnerAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0] != "Bearer":
            return None
        if len(header) != 2 or not header[1].startswith("pp_"):
            raise exceptions.AuthenticationFailed(
                "A payment-partner token is required here.", code="not_a_partner_token"
            )
        partner = (
            PaymentPartner.objects.select_related("utility")
            .filter(digest=hashlib.sha256(header[1].encode()).hexdigest(), is_active=True)
            .first()
        )
        if partner is None:
            raise exceptions.AuthenticationFailed(
                "Unknown or disabled partner token.", code="token_not_valid"
            )
        return partner, partner

    def authenticate_header(self, request):
        return "Bearer"


class PartnerTokenScheme(OpenApiAuthenticationExtension):
    target_class = PartnerAuthentication
    name = "paymentPartnerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A payment-partner token (pp_…).",
        }


PAYMENT_CODE = OpenApiParameter(
    "code",
    str,
    location=OpenApiParameter.PATH,
    pattern=r"^[0-9 -]{12,40}$",
    description="Twelve digits (spaces and hyphens ignored), the last two ISO 7064 MOD 97-10 "
    "check digits: a mistyped code is refused (400) before any account is looked up.",
)


class PaymentCodeLookupSerializer(serializers.Serializer):
    payment_code = serializers.CharField()
    name = serializers.CharField(help_text="Masked: the first letter of each word.")
    consumer_id = serializers.CharField(help_text="Masked.")
    amount_due = serializers.CharField()
    currency = serializers.CharField()
    minimum = serializers.CharField(help_text="The smallest payment taken.")


class PartnerPaymentSerializer(serializers.Serializer):
    receipt_number = serializers.CharField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    status = serializers.CharField()


class PaymentCodeApi(APIView):
    authentication_classes = [PartnerAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[PAYMENT_CODE],
        responses=PaymentCodeLookupSerializer,
        summary="Look up a payment code: masked name and amount due",
    )
    @refuses(400, 409)
    def get(self, request, code: str):
        account = payments.payment_code_account(code=code, partner=request.user)
        words = account.name.split()
        masked = " ".join(w[0] + "*" * (len(w) - 1) for w in words)
        return Response(
            {
                "payment_code": code,
                "name": masked,
                "consumer_id": account.consumer_id[:2] + "…" + account.consumer_id[-2:],
                "amount_due": _money(payments.amount_due(account), account),
                "currency": account.utility.currency,
                "minimum": _money(account.utility.min_topup, account),
            }
        )


class PaymentCodePayApi(APIView):
    authentication_classes = [PartnerAuthentication]
    permission_classes = [IsAuthenticated]

    class PayInput(AmountInput):
        amount = AmountField(max_length=32, help_text=AMOUNT_HELP)
        reference = serializers.CharField(
            max_length=100, help_text="Yours: the same reference is paid once."
        )

    @extend_schema(
        request=PayInput,
        parameters=[PAYMENT_CODE],
        responses={201: PartnerPaymentSerializer, 200: PartnerPaymentSerializer},
        summary="Pay against a payment code",
        description="201: paid now; 200: this reference was paid before (its receipt again).",
    )
    @refuses(409)
    def post(self, request, code: str):
        data = self.PayInput(data=request.data)
        data.is_valid(raise_exception=True)
        topup, created = payments.partner_payment_record(
            partner=request.user, code=code, **data.validated_data
        )
        return Response(
            {
                "receipt_number": topup.receipt_number,
                "amount": _money(topup.amount, topup.account),
                "currency": topup.currency,
                "status": topup.status,
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
