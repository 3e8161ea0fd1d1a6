"""The home page and the 404 page in Chromium: they load cleanly and get people into rooms."""

from __future__ import annotations

import re
from typing import Any

from browser_harness import PHONE, screenshot
from playwright.sync_api import expect


def test_home_page_loads_without_errors(browser: Any, fake_server: Any) -> None:
    page = browser.open(f"{fake_server.url}/")
    expect(page).to_have_title(re.compile("Switchboard"))
    expect(page.locator("#room-input")).to_be_visible()
    expect(page.locator("#room-prefix")).to_have_text(re.compile(r"127\.0\.0\.1:\d+/"))
    page.wait_for_load_state("networkidle")
    screenshot(page, "home-desktop")
    assert browser.errors(page) == []


def test_typed_name_becomes_a_room_url(browser: Any, fake_server: Any) -> None:
    page = browser.open(f"{fake_server.url}/")
    page.fill("#room-input", "  Team Standup! ")
    page.press("#room-input", "Enter")
    page.wait_for_url(f"{fake_server.url}/team-standup")
    expect(page.locator("#prejoin")).to_be_visible()
    expect(page.locator("#prejoin-room")).to_have_text(re.compile("/team-standup$"))


def test_pasted_meeting_link_is_accepted(browser: Any, fake_server: Any) -> None:
    page = browser.open(f"{fake_server.url}/")
    page.fill("#room-input", "https://meet.example.com/Weekly-Sync")
    page.click("#join-button")
    page.wait_for_url(f"{fake_server.url}/weekly-sync")


def test_unusable_name_is_refused_in_place(browser: Any, fake_server: Any) -> None:
    page = browser.open(f"{fake_server.url}/")
    page.fill("#room-input", "!!!")
    page.click("#join-button")
    expect(page.locator("#join-form")).to_have_class(re.compile("invalid"))
    expect(page.locator("#room-input")).to_have_attribute("aria-invalid", "true")
    assert page.url == f"{fake_server.url}/"


def test_new_meeting_gets_a_random_readable_name(browser: Any, fake_server: Any) -> None:
    page = browser.open(f"{fake_server.url}/")
    page.click("#new-button")
    page.wait_for_url(re.compile(r"/[a-z]+-[a-z]+-\d{4}$"))
    expect(page.locator("#prejoin")).to_be_visible()


def test_unknown_page_is_a_404_with_a_way_home(browser: Any, fake_server: Any) -> None:
    page = browser.open(f"{fake_server.url}/")
    response = page.goto(f"{fake_server.url}/not%20a%20room")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("There is no meeting here")
    page.click("text=Go to the home page")
    page.wait_for_url(f"{fake_server.url}/")


def test_home_page_on_a_phone(phone_browser: Any, fake_server: Any) -> None:
    page = phone_browser.open(f"{fake_server.url}/")
    page.wait_for_load_state("networkidle")
    assert page.viewport_size == PHONE
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
    expect(page.locator("#room-prefix")).to_be_hidden()
    screenshot(page, "home-phone")
    assert phone_browser.errors(page) == []
