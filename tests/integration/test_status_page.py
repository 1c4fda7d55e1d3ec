"""The status page in a real browser (Debian's headless Chromium) through the proxy:
it shows every service's state under the strict CSP, with no violation logged."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.browser import chromium
from tests.sandbox import RunningStack


def _spki_pin(fullchain: Path) -> str:
    """Chromium's pin for the dev leaf: it then trusts exactly the key the dev CA certified."""
    leaf = x509.load_pem_x509_certificates(fullchain.read_bytes())[0]
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def browser(prod_stack: RunningStack, tmp_path: Path):  # type: ignore[no-untyped-def]
    pin = _spki_pin(prod_stack.tls_dir / "fullchain.pem")
    driver = chromium(tmp_path / "profile", f"--ignore-certificate-errors-spki-list={pin}")
    try:
        yield driver
    finally:
        driver.quit()


def test_status_page_shows_every_service_under_the_strict_csp(prod_stack: RunningStack, browser) -> None:  # type: ignore[no-untyped-def]
    browser.get(f"https://localhost:{prod_stack.https_port}/")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.body.dataset.refreshed") == "true")
    states = {
        row.get_attribute("data-service"): row.find_element(By.CSS_SELECTOR, "td.state").get_attribute("data-state")
        for row in browser.find_elements(By.CSS_SELECTOR, "#services tbody tr")
    }
    assert set(states) == {"proxy", "api", "bot", "mtproto"}
    # In prod mode here: the API healthy; the bot without Telegram and the collector
    # without credentials degraded, as their own health says.
    assert states == {"proxy": "healthy", "api": "healthy", "bot": "degraded", "mtproto": "degraded"}
    overall = browser.find_element(By.ID, "overall").get_attribute("data-state")
    assert overall == "degraded"
    console = browser.get_log("browser")
    violations = [entry["message"] for entry in console if "Content Security Policy" in entry["message"]]
    assert violations == []
    assert not [entry for entry in console if entry["level"] == "SEVERE"], console
