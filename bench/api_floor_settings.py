"""Settings of the server bench/api.py starts: the project's own, plus the floor view's URL."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "api_floor_urls"
