"""Configuring the web source: the settings' validation and what a missing setting says (no browser)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from pipelines.sources import ExportSource, nikki_source, sportlink_source
from pipelines.web.source import WebNikkiSource, WebSportlinkSource
from runs.models import RunStatus
from runs.runner import run_pipeline
from syncsite.settings import env_choice, env_float


def test_the_source_kind_is_checked(monkeypatch):
    monkeypatch.setenv("SPORTLINK_SOURCE", " Web ")
    assert env_choice("SPORTLINK_SOURCE", "files", ("files", "web")) == "web"
    monkeypatch.setenv("SPORTLINK_SOURCE", "browser")
    with pytest.raises(ImproperlyConfigured, match="SPORTLINK_SOURCE must be one of files, web, got 'browser'"):
        env_choice("SPORTLINK_SOURCE", "files", ("files", "web"))
    monkeypatch.delenv("SPORTLINK_SOURCE")
    assert env_choice("SPORTLINK_SOURCE", "files", ("files", "web")) == "files"


@pytest.mark.parametrize("raw", ["fast", "nan", "inf", "0.001"])
def test_a_timeout_scale_must_be_a_sensible_number(monkeypatch, raw):
    monkeypatch.setenv("WEB_SOURCE_TIMEOUT_SCALE", raw)
    with pytest.raises(ImproperlyConfigured, match="WEB_SOURCE_TIMEOUT_SCALE"):
        env_float("WEB_SOURCE_TIMEOUT_SCALE", 1.0, minimum=0.01)


def test_files_stay_the_default_and_web_is_chosen_per_site(settings):
    assert isinstance(sportlink_source(), ExportSource) and isinstance(nikki_source(), ExportSource)
    settings.SPORTLINK_SOURCE = "web"
    source = sportlink_source()
    assert isinstance(source, WebSportlinkSource) and isinstance(nikki_source(), ExportSource)
    settings.NIKKI_SOURCE = "web"
    assert isinstance(nikki_source(), WebNikkiSource)
    source.session.close()


@pytest.mark.django_db(transaction=True)
def test_missing_credentials_fail_the_download_before_any_browser_starts(settings, tmp_path):
    settings.SPORTLINK_SOURCE = "web"
    settings.SPORTLINK_USERNAME = "sync-bot"
    settings.SPORTLINK_PASSWORD = ""
    settings.SPORTLINK_OTP_SECRET = ""
    settings.WEB_SOURCE_CHROMIUM = str(tmp_path / "no-chromium-here")  # never reached
    run = run_pipeline("teams")
    assert run.status == RunStatus.FAILED
    assert run.steps.get(name="team-download").reason == (
        "Sportlink Club is set as a web source, but SPORTLINK_PASSWORD, SPORTLINK_OTP_SECRET are not set")


@pytest.mark.django_db(transaction=True)
def test_a_missing_chromium_is_named_with_the_fix(settings, tmp_path):
    settings.NIKKI_SOURCE = "web"
    settings.NIKKI_USERNAME, settings.NIKKI_PASSWORD = "penningmeester", "geheim-wachtwoord"
    settings.WEB_SOURCE_CHROMIUM = str(tmp_path / "no-chromium-here")
    run = run_pipeline("nikki")
    assert run.status == RunStatus.FAILED
    assert run.steps.get(name="nikki-download").reason == (
        f"Chromium was not found at {tmp_path / 'no-chromium-here'}: install Debian's chromium package "
        "(`make browser-deps`) or set WEB_SOURCE_CHROMIUM")
