from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.views import TokenRefreshView

from accounts import selectors, services
from accounts.models import AccountLink, Language, OneTimeCode
from core.http import client_ip
from core.phone import phone_mask
from core.schema import refuses
from meters.auth import ServiceTokenAuthentication


def _challenge_body(challenge: OneTimeCode) -> dict:
    return {
        "challenge_id": str(challenge.id),
        "expires_in": settings.OTP_TTL_SECONDS,
        "resend_in": settings.OTP_RESEND_COOLDOWN_SECONDS,
    }


class LinkChallengeSerializer(serializers.Serializer):
    challenge_id = serializers.UUIDField()
    expires_in = serializers.IntegerField(help_text="Seconds.")
    resend_in = serializers.IntegerField(help_text="Seconds before a new code may be asked for.")


class ChallengeSerializer(LinkChallengeSerializer):
    sent_to = serializers.CharField(
        help_text="The masked number the code went to, e.g. +965 ••••1234."
    )


class CodeInputSerializer(serializers.Serializer):
    challenge_id = serializers.UUIDField()
    code = serializers.RegexField(r"^\d{4,8}$", max_length=8)


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField()
    name = serializers.CharField(source="first_name")
    language = serializers.ChoiceField(choices=Language.choices)


class SignInStartApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class SignInStartInput(serializers.Serializer):
        phone = serializers.CharField(
            max_length=32, help_text="E.164 (+96550001234), or national with country."
        )
        country = serializers.RegexField(
            r"^[A-Za-z]{2}$", required=False, help_text="ISO alpha-2 hint."
        )
        language = serializers.ChoiceField(choices=Language.choices, default=Language.ENGLISH)

    @extend_schema(
        request=SignInStartInput,
        responses={202: ChallengeSerializer},
        summary="Send a sign-in code",
        description=(
            "Texts a sign-in code to the number. Limits, each per rolling hour: codes to one "
            "number (spent only by sign-in codes, so codes others ask for to link an account "
            "never lock its holder out) and codes from one client address; `resend_too_soon` "
            "and `too_many_codes` answer 429 with Retry-After. See docs/sign-in.md."
        ),
    )
    @refuses(429)
    def post(self, request):
        data = self.SignInStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        challenge = services.sign_in_start(
            phone=data.validated_data["phone"],
            country=(data.validated_data.get("country") or "").upper() or None,
            language=data.validated_data["language"],
            client_ip=client_ip(request),
        )
        body = {**_challenge_body(challenge), "sent_to": phone_mask(challenge.phone)}
        return Response(body, status=status.HTTP_202_ACCEPTED)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Send as `Authorization: Bearer …`; lives minutes.")
    refresh = serializers.CharField(help_text="Trade for a new pair at /auth/token/refresh/.")


class SignInSerializer(TokenPairSerializer):
    user = UserSerializer()
    created = serializers.BooleanField(help_text="This sign-in created the user.")


class SignInCompleteApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        request=CodeInputSerializer,
        responses={200: SignInSerializer},
        summary="Exchange the code for tokens",
    )
    @refuses(404)
    def post(self, request):
        data = CodeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user, tokens, created = services.sign_in_complete(**data.validated_data)
        return Response(
            {
                "access": tokens.access,
                "refresh": tokens.refresh,
                "user": UserSerializer(user).data,
                "created": created,
            }
        )


class TokenRefreshApi(TokenRefreshView):
    """simplejwt's view, with its answer typed: refresh tokens rotate, so both come back."""

    @extend_schema(
        request=TokenRefreshSerializer,
        responses={200: TokenPairSerializer},
        summary="Trade a refresh token for a new pair (the old one is revoked)",
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class SignOutApi(APIView):
    class SignOutInput(serializers.Serializer):
        refresh = serializers.CharField(max_length=2048)
        everywhere = serializers.BooleanField(
            default=False, help_text="Revoke every session of this user."
        )

    @extend_schema(request=SignOutInput, responses={204: None}, summary="Revoke a refresh token")
    def post(self, request):
        data = self.SignOutInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.sign_out(user=request.user, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProfileApi(APIView):
    class ProfileInput(serializers.Serializer):
        language = serializers.ChoiceField(choices=Language.choices, required=False)
        name = serializers.CharField(max_length=150, required=False, allow_blank=True)

    @extend_schema(responses=UserSerializer, summary="My profile")
    def get(self, request):
        return Response(UserSerializer(request.user).data)

    @extend_schema(request=ProfileInput, responses=UserSerializer, summary="Change my profile")
    def patch(self, request):
        data = self.ProfileInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.profile_update(user=request.user, **data.validated_data)
        return Response(UserSerializer(user).data)


class UtilityListApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    class UtilitySerializer(serializers.Serializer):
        code = serializers.CharField()
        name = serializers.CharField()
        country = serializers.CharField()
        timezone = serializers.CharField()
        currency = serializers.CharField()
        currency_minor_unit = serializers.IntegerField()
        helpline = serializers.CharField()
        languages = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        responses=UtilitySerializer(many=True), summary="Utilities an account can be linked at"
    )
    def get(self, request):
        return Response(self.UtilitySerializer(selectors.utilities_active(), many=True).data)


class LinkedMeterSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The meter id for /meters/{id}/ calls.")
    serial = serializers.CharField()
    current = serializers.BooleanField(help_text="The account holds the meter now.")


def _link_meters(link) -> list[dict]:
    """The meters the account held within the holder's period (assignments are prefetched)."""
    since = link.visible_from
    seen: dict[int, dict] = {}
    for assignment in sorted(link.account.meter_assignments.all(), key=lambda a: a.start):
        if since and assignment.end is not None and assignment.end <= since:
            continue
        meter = assignment.meter
        current = assignment.end is None and link.unlinked_at is None
        seen[meter.pk] = {"id": meter.pk, "serial": meter.serial, "current": current}
    return list(seen.values())


class LinkOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    account = serializers.IntegerField(
        source="account_id", help_text="The account id for /accounts/{id}/ calls."
    )
    utility = serializers.CharField(source="account.utility.code")
    utility_name = serializers.CharField(source="account.utility.name")
    consumer_id = serializers.CharField(source="account.consumer_id")
    name = serializers.CharField(source="account.name")
    premises_address = serializers.CharField(source="account.premises_address")
    status = serializers.CharField(source="account.status")
    access = serializers.SerializerMethodField(
        help_text="full: see and act; read_only: a closed account's own history."
    )
    role = serializers.ChoiceField(
        choices=AccountLink.Role.choices,
        help_text="holder: proved the registered mobile; shared: shared by the holder, with the "
        "rights below (docs/sharing.md).",
    )
    can_view = serializers.BooleanField()
    can_pay = serializers.BooleanField()
    receives_alerts = serializers.BooleanField()
    registered_mobile = serializers.SerializerMethodField()
    linked_at = serializers.DateTimeField(source="created_at")
    ended_at = serializers.DateTimeField(source="unlinked_at", allow_null=True)
    visible_from = serializers.DateTimeField(
        allow_null=True,
        help_text="The earliest moment of the account shown to you (null: from its start).",
    )
    meters = serializers.SerializerMethodField()

    def get_access(self, link) -> str:
        return "full" if link.unlinked_at is None else "read_only"

    def get_registered_mobile(self, link) -> str:
        # A closed account's number may since be another person's: show the one this user proved.
        return phone_mask(
            link.verified_mobile if link.unlinked_at else link.account.registered_mobile
        )

    @extend_schema_field(LinkedMeterSerializer(many=True))
    def get_meters(self, link) -> list[dict]:
        return _link_meters(link)


class LinkListApi(APIView):
    class LinkStartInput(serializers.Serializer):
        utility = serializers.SlugField(max_length=32)
        consumer_id = serializers.CharField(max_length=32)

    @extend_schema(responses=LinkOutputSerializer(many=True), summary="My linked consumer accounts")
    def get(self, request):
        links = selectors.links_for_user(user=request.user)
        return Response(LinkOutputSerializer(links, many=True).data)

    @extend_schema(
        request=LinkStartInput,
        responses={202: LinkChallengeSerializer},
        summary="Start linking: send a code to the account's registered mobile",
        description=(
            "Texts a code to the mobile registered with the utility for this consumer id (never "
            "to a number the caller gives). Every consumer id of a known utility gets the same "
            "answer, whether an open account has it or not: an id that is unknown, another "
            "utility's or a closed account's is answered 202 with a challenge, spends the same "
            "limits, texts no one, and every code tried on it fails like a wrong code. Refused "
            "only for an unknown utility, an account the caller already links, and limits "
            "(`resend_too_soon`, `too_many_codes` with Retry-After: per user, per account, per "
            "client address, each per rolling hour). See docs/sign-in.md."
        ),
    )
    @refuses(409, 429)
    def post(self, request):
        data = self.LinkStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        challenge = services.link_start(
            user=request.user,
            utility_code=data.validated_data["utility"],
            consumer_id=data.validated_data["consumer_id"],
            client_ip=client_ip(request),
        )
        return Response(_challenge_body(challenge), status=status.HTTP_202_ACCEPTED)


class LinkConfirmApi(APIView):
    @extend_schema(
        request=CodeInputSerializer,
        responses={201: LinkOutputSerializer},
        summary="Confirm a link",
        description=(
            "Turns the code texted to the account's registered mobile into a link. A wrong code "
            "answers `wrong_code` with `attempts_left`; the fifth wrong try, and every try after, "
            "`code_locked`. A challenge for an id no open account has answers exactly so."
        ),
    )
    @refuses(404)
    def post(self, request):
        data = CodeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        link = services.link_confirm(user=request.user, **data.validated_data)
        link = selectors.link_get(user=request.user, link_id=link.pk)
        return Response(LinkOutputSerializer(link).data, status=status.HTTP_201_CREATED)


class LinkDetailApi(APIView):
    @extend_schema(responses=LinkOutputSerializer, summary="One linked account")
    def get(self, request, link_id: int):
        return Response(
            LinkOutputSerializer(selectors.link_get(user=request.user, link_id=link_id)).data
        )

    @extend_schema(
        responses={204: None},
        summary="Unlink an account (or hide a closed one): you stop seeing it at once",
    )
    def delete(self, request, link_id: int):
        services.link_remove(user=request.user, link_id=link_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- The utility's systems ------------------------------------------------------------------


class UtilityAccountApi(APIView):
    """The utility's customer system keeps consumer master data current, with its service token.
    A new registered mobile ends the links its old number proved, at once, and tells their
    holders; the new holder links with a code as usual."""

    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsAuthenticated]

    class AccountInput(serializers.Serializer):
        registered_mobile = serializers.CharField(max_length=32, required=False)
        name = serializers.CharField(max_length=200, required=False)
        premises_address = serializers.CharField(max_length=1000, required=False, allow_blank=True)

    class AccountOutput(serializers.Serializer):
        id = serializers.IntegerField()
        consumer_id = serializers.CharField()
        registered_mobile = serializers.CharField()
        registered_mobile_since = serializers.DateTimeField(allow_null=True)
        name = serializers.CharField()
        premises_address = serializers.CharField()
        status = serializers.CharField()
        links_ended = serializers.IntegerField()

    @extend_schema(
        request=AccountInput,
        responses=AccountOutput,
        summary="Change a consumer account's master data (utility systems)",
    )
    def patch(self, request, consumer_id: str):
        data = self.AccountInput(data=request.data)
        data.is_valid(raise_exception=True)
        account, ended = services.consumer_account_update(
            utility=request.user.utility, consumer_id=consumer_id, **data.validated_data
        )
        account.links_ended = len(ended)
        return Response(self.AccountOutput(account).data)
