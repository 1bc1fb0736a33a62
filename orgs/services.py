"""Writes on organizations and memberships."""

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from orgs.models import Membership, Organization, Role


@transaction.atomic
def org_ensure(*, slug: str, name: str, timezone: str, default_region: str) -> Organization:
    """The organization with this slug, created (and validated) when it does not exist yet."""
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        org = Organization(slug=slug, name=name, timezone=timezone, default_region=default_region)
        org.full_clean()
        org.save()
    return org


def user_ensure(*, username: str, email: str = "", password: str | None = None) -> AbstractBaseUser:
    """The user with this username, created when missing; the password is set only when given."""
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"email": email}
    )
    if password:
        user.set_password(password)
        user.save()
    elif created:
        user.set_unusable_password()
        user.save()
    return user


def membership_grant(*, org: Organization, user: AbstractBaseUser, role: Role) -> Membership:
    """Gives the user this role in the organization, replacing any role they had there."""
    membership, _ = Membership.objects.update_or_create(org=org, user=user, defaults={"role": role})
    return membership
