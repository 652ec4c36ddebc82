"""Clients signed in as a user: Django's test client for the portal, DRF's APIClient for the API."""

from django.test import Client
from rest_framework.test import APIClient


def signed_in(user) -> Client:
    """A portal client with `user` signed in (a session, as after the sign-in form)."""
    client = Client()
    client.force_login(user)
    return client


def html_of(response) -> str:
    return response.content.decode()


def api_as(user=None) -> APIClient:
    """An API client authenticated as `user` (no session, no token); anonymous when `user` is None."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client
