"""Sharing an account: the holder invites, changes and removes; the invitee accepts or declines.
See docs/sharing.md."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import shares
from accounts.models import AccountLink, AccountShare
from core.http import BoundedLimitOffsetPagination
from core.phone import phone_mask
from core.schema import id_converter_register, refuses

id_converter_register()


class ShareSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    mobile = serializers.SerializerMethodField(help_text="Masked: +965 ••••1234.")
    can_view = serializers.BooleanField(help_text="Sees balance, usage, statements, bills.")
    can_pay = serializers.BooleanField(help_text="May top the account up.")
    receives_alerts = serializers.BooleanField(help_text="Gets its balance and outage alerts.")
    status = serializers.ChoiceField(
        choices=AccountShare.Status.choices,
        help_text="ended: with the holder's link, or the person left.",
    )
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="A pending invitation lapses here.")
    responded_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)

    def get_mobile(self, share) -> str:
        return phone_mask(share.phone)


class RightsSerializer(serializers.Serializer):
    can_view = serializers.BooleanField(default=True)
    can_pay = serializers.BooleanField(default=False)
    receives_alerts = serializers.BooleanField(default=False)


class ShareInviteInput(RightsSerializer):
    mobile = serializers.CharField(
        max_length=32,
        help_text="The person's mobile: E.164 (+96550001234) or national, read in the "
        "utility's country.",
    )


class ShareChangeInput(serializers.Serializer):
    can_view = serializers.BooleanField(required=False)
    can_pay = serializers.BooleanField(required=False)
    receives_alerts = serializers.BooleanField(required=False)


class AccountShareListApi(APIView):
    pagination_class = BoundedLimitOffsetPagination

    @extend_schema(
        responses=ShareSerializer(many=True),
        summary="The account's shares, newest first (holder only)",
    )
    def get(self, request, account_id: int):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            shares.shares_for_holder(user=request.user, account_id=account_id), request, view=self
        )
        return paginator.get_paginated_response(ShareSerializer(page, many=True).data)

    @extend_schema(
        request=ShareInviteInput,
        responses={201: ShareSerializer},
        summary="Share the account with a mobile number (holder only)",
        description=(
            "The person is told in the app if they use it, else by one SMS in the utility's "
            "language, and accepts within 7 days. Refused: `invalid_phone`, `not_a_mobile`, "
            "`share_self` (your own number), `no_rights` (400); `share_not_allowed` (403: not "
            "the holder); `already_shared` (409: the number shares or is linked already), "
            "`too_many_shares` (409: the utility's max_shares_per_account open shares), "
            "`sharing_unavailable` (409: the utility does not allow sharing), `account_closed`; "
            "`too_many_invitations` (429 with Retry-After: the holder's hourly or the number's "
            "daily budget of invitations, revoked ones included)."
        ),
    )
    @refuses(409, 429)
    def post(self, request, account_id: int):
        data = ShareInviteInput(data=request.data)
        data.is_valid(raise_exception=True)
        share = shares.share_invite(user=request.user, account_id=account_id, **data.validated_data)
        return Response(ShareSerializer(share).data, status=status.HTTP_201_CREATED)


class AccountShareDetailApi(APIView):
    @extend_schema(
        request=ShareChangeInput,
        responses=ShareSerializer,
        summary="Change what a share may do (holder only); an accepted share changes at once",
        description=(
            "Refused: `no_rights` (400: nothing left), `share_not_allowed` (403: not the "
            "holder), `share_closed` (409: revoked, declined, ended or expired)."
        ),
    )
    @refuses(409)
    def patch(self, request, account_id: int, share_id: int):
        data = ShareChangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        share = shares.share_update(
            user=request.user, account_id=account_id, share_id=share_id, **data.validated_data
        )
        return Response(ShareSerializer(share).data)

    @extend_schema(
        responses={204: None},
        summary="Remove a share (holder only): the person loses the account at once and is told",
    )
    def delete(self, request, account_id: int, share_id: int):
        shares.share_revoke(user=request.user, account_id=account_id, share_id=share_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="For accept/ and decline/.")
    utility = serializers.CharField(source="account.utility.code")
    utility_name = serializers.CharField(source="account.utility.name")
    consumer_id = serializers.CharField(source="account.consumer_id")
    holder = serializers.SerializerMethodField(
        help_text="The account holder's name, masked: the first letter of each word."
    )
    can_view = serializers.BooleanField()
    can_pay = serializers.BooleanField()
    receives_alerts = serializers.BooleanField()
    status = serializers.CharField(help_text="pending; declined once declined.")
    expires_at = serializers.DateTimeField()

    def get_holder(self, share) -> str:
        return shares.name_mask(share.account.name)


class SharedLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The link id: DELETE /links/{id}/ leaves the share.")
    account = serializers.IntegerField(
        source="account_id", help_text="The account id for /accounts/{id}/ calls."
    )
    utility = serializers.CharField(source="account.utility.code")
    consumer_id = serializers.CharField(source="account.consumer_id")
    role = serializers.ChoiceField(choices=AccountLink.Role.choices)
    can_view = serializers.BooleanField()
    can_pay = serializers.BooleanField()
    receives_alerts = serializers.BooleanField()
    visible_from = serializers.DateTimeField(
        allow_null=True, help_text="As the holder's: a share never shows more than they see."
    )


class InvitationListApi(APIView):
    @extend_schema(
        responses=InvitationSerializer(many=True),
        summary="Accounts shared with my number, waiting for my answer",
    )
    def get(self, request):
        invitations = shares.invitations_for_user(user=request.user)[:50]
        return Response(InvitationSerializer(invitations, many=True).data)


class InvitationAcceptApi(APIView):
    @extend_schema(
        request=None,
        responses=SharedLinkSerializer,
        summary="Accept an invitation: the account appears in my links with the rights given",
        description=(
            "Accepting again answers the same link. Refused: `invitation_not_found` (404: not "
            "to your number), `invitation_expired` (410), `share_closed` (409: declined, "
            "revoked or ended), `already_linked` (409)."
        ),
    )
    @refuses(409, 410)
    def post(self, request, share_id: int):
        link = shares.share_accept(user=request.user, share_id=share_id)
        link = AccountLink.objects.select_related("account__utility").get(pk=link.pk)
        return Response(SharedLinkSerializer(link).data)


class InvitationDeclineApi(APIView):
    @extend_schema(
        request=None,
        responses=InvitationSerializer,
        summary="Decline an invitation (declining again changes nothing)",
    )
    @refuses(409, 410)
    def post(self, request, share_id: int):
        share = shares.share_decline(user=request.user, share_id=share_id)
        return Response(InvitationSerializer(share).data)


urlpatterns = [
    path(
        "accounts/<id:account_id>/shares/",
        AccountShareListApi.as_view(),
        name="account-shares",
    ),
    path(
        "accounts/<id:account_id>/shares/<id:share_id>/",
        AccountShareDetailApi.as_view(),
        name="account-share",
    ),
    path("share-invitations/", InvitationListApi.as_view(), name="share-invitations"),
    path(
        "share-invitations/<id:share_id>/accept/",
        InvitationAcceptApi.as_view(),
        name="share-invitation-accept",
    ),
    path(
        "share-invitations/<id:share_id>/decline/",
        InvitationDeclineApi.as_view(),
        name="share-invitation-decline",
    ),
]
