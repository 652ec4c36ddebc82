"""allauth's models are kept out of the admin.

E-mail addresses, sessions and single sign-on are managed by their owners on their account pages, and a second
factor's row holds its secret: none of them is the superuser's to read or edit. (allauth's apps come before
this one in INSTALLED_APPS, so their admin modules have registered the models by now.)
"""

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from allauth.usersessions.models import UserSession
from django.contrib import admin

for model in (EmailAddress, Authenticator, SocialAccount, SocialApp, SocialToken, UserSession):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
