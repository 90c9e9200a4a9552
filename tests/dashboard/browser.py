"""Driving Debian's headless Chromium with Playwright: where it is, how it starts, how one signs in."""

from __future__ import annotations

from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "sign_in_page"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def sign_in_page(page: Any, url: str, token: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/dashboard/")
    expect(page).to_have_url(f"{url}/dashboard/login?next=%2Fdashboard%2F")
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet", exact=True)).to_be_visible()
