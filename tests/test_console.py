"""The web console in a real browser: headless Chromium from Debian's packages driven by Selenium,
against the session's API process, Celery worker and tiny model, and a real webhook receiver.

SKUAI_CONSOLE_SCREENSHOTS=docs/console writes the screenshots docs/console.md shows."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from shared.api_keys import KeyStore
from shared.settings import Settings
from tests.receiver import Receiver
from tests.support.http import http
from tests.support.images import distinct_images
from tests.support.processes import WorkerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = os.environ.get("SKUAI_CONSOLE_SCREENSHOTS", "")
WAIT = 60.0
# What a keyboard can act on; the Tab walk must reach each visible one.
FOCUSABLE_JS = """
const selector = 'a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), '
  + 'select:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';
const folded = (e) => {
  const details = e.closest("details");
  return details && !details.open && !e.closest("summary");
};
return [...document.querySelectorAll(selector)].filter(
  (e) => e.getClientRects().length > 0 && !folded(e),
);
"""
# Any alert, confirm or prompt a page might run is recorded instead of shown.
TRAP_DIALOGS_JS = """
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = () => { window.__dialogs = (window.__dialogs || 0) + 1; };
}
"""
XSS_FILE = "<img src=x onerror=alert(1)>.png"
XSS_ENTRY = "<svg onload=alert(2)>.png"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module (Debian's; Selenium Manager downloads nothing)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "the console tests need Debian's chromium and chromium-driver (apt-get install)"
        )
    downloads = tmp_path_factory.mktemp("downloads")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,900")
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRAP_DIALOGS_JS})
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads  # type: ignore[attr-defined]
    yield driver
    driver.quit()


def sign_in(driver: WebDriver, api_url: str, key: str) -> None:
    """Through the sign-in form, as a person would (signed out first: each test starts fresh)."""
    driver.get(f"{api_url}/console/")
    driver.delete_all_cookies()
    driver.get(f"{api_url}/console/")
    assert driver.current_url.endswith("/console/sign-in")
    shoot(driver, "sign-in")
    driver.find_element(By.ID, "api-key").send_keys(key)
    driver.find_element(By.ID, "sign-in").click()
    wait_for(driver, lambda d: d.current_url.endswith("/console/upload"))


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], object]) -> None:
    """Until `condition(driver)` is true (60 s at most); else fail with what the page says."""
    try:
        # a page that is replaced while it is read leaves stale elements: read it again
        ignored = (NoSuchElementException, StaleElementReferenceException)
        WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out; the page says {page_state(driver)}")


def page_state(driver: WebDriver) -> str:
    """The status lines of the page, for a failure message."""
    lines = driver.execute_script(
        "return [...document.querySelectorAll('[role=status], [role=alert]')]"
        ".map((e) => e.id + ': ' + e.textContent)"
    )
    return f"{driver.current_url}: {lines}"


def shoot(driver: WebDriver, name: str) -> None:
    """A screenshot for docs/console.md, when asked for; palette PNG to stay small."""
    if not SHOTS:
        return
    from PIL import Image

    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    image.quantize(colors=64).save(Path(SHOTS) / f"{name}.png", optimize=True)


def no_dialog_ran(driver: WebDriver) -> bool:
    """Neither a trapped nor a real dialog."""
    try:
        driver.switch_to.alert  # noqa: B018 (raises when there is none)
        return False
    except NoAlertPresentException:
        return not driver.execute_script("return window.__dialogs || 0")


def upload(driver: WebDriver, paths: list[Path]) -> str:
    """Choose files on the upload page, upload them, wait for the batch to finish; its id."""
    driver.get(driver.current_url.split("/console/")[0] + "/console/upload")
    driver.find_element(By.ID, "pick-files").send_keys("\n".join(str(p) for p in paths))
    driver.find_element(By.ID, "upload-start").click()
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-batch-done"))
    wait_for(
        driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-grid-loaded")
    )
    return driver.find_element(By.ID, "batch-id").text


def write_zip(path: Path, files: list[tuple[str, bytes]]) -> Path:
    """A zip of `files` (name, bytes)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files:
            archive.writestr(name, data)
    return path


def console_client(api_url: str, key: str) -> tuple[requests.Session, str]:
    """A signed-in HTTP client of the console and its CSRF token."""
    client = requests.Session()
    page = client.get(f"{api_url}/console/sign-in", timeout=10)
    login = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert login is not None
    signed = client.post(
        f"{api_url}/console/sign-in",
        data={"api_key": key, "csrf_token": login[1]},
        allow_redirects=False,
        timeout=10,
    )
    assert signed.status_code == 302, signed.text
    token = re.search(
        r'name="csrf-token" content="([^"]+)"',
        client.get(f"{api_url}/console/upload", timeout=10).text,
    )
    assert token is not None
    return client, token[1]


def shown_confidence(result: dict) -> float:
    """The confidence of what the result claims: the model's where it stops at the model."""
    level = "model" if result["decision"] in ("model", "unknown") else "sku"
    return float(result[level]["confidence"])


def grid_confidences(driver: WebDriver) -> list[float]:
    """The confidences the grid shows, as fractions."""
    cells = driver.find_elements(By.CSS_SELECTOR, "#grid .confidence")
    return [float(cell.text.rstrip("%")) / 100 for cell in cells]


def test_walk_through(
    browser: WebDriver,
    api_url: str,
    api_key: str,
    inference_worker: WorkerProcess,
    tiny_catalog: Path,
    tmp_path: Path,
    hook: tuple[Receiver, Callable[..., dict]],
    webhook_workers: Callable[..., WorkerProcess],
) -> None:
    """Sign in, upload a zip of 200 photos, watch it finish, filter to low confidence, download
    the CSV, read a failing webhook's log and replay it, sign out."""
    rx, subscribe = hook
    webhook_workers(schedule="0.2,0.2")
    rx.plan = [(500, {}, 0.0)] * 3  # the whole schedule fails: the subscription is disabled
    sub = subscribe(["batch.completed"])
    photos = write_zip(tmp_path / "photos.zip", distinct_images(tiny_catalog, 200, salt=21))

    sign_in(browser, api_url, api_key)
    assert api_key not in browser.current_url
    cookie = browser.get_cookie("skuai_console")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert api_key not in json.dumps(browser.get_cookies())
    shoot(browser, "upload")

    batch_id = upload(browser, [photos])
    assert browser.current_url.endswith(f"/console/batches/{batch_id}")
    assert browser.find_element(By.CSS_SELECTOR, '[data-count="succeeded"]').text == "200"
    decided = [
        browser.find_element(By.CSS_SELECTOR, f'[data-decision="{d}"]').text
        for d in ("sku", "model", "unknown")
    ]
    assert sum(int(n) for n in decided) == 200
    assert browser.find_element(By.ID, "batch-progress").get_attribute("value") == "200"
    shoot(browser, "batch")

    # Low confidence, lowest first: the grid holds exactly the API's results in that range.
    exported = http.get(
        f"{api_url}/v1/batches/{batch_id}/results", headers={"Accept": "application/x-ndjson"}
    ).text.splitlines()
    confidences = sorted(shown_confidence(json.loads(line)["result"]) for line in exported)
    cut = round(confidences[len(confidences) // 2], 2)  # about half the batch
    low = [c for c in confidences if c <= cut]
    browser.find_element(By.ID, "filter-max").clear()
    browser.find_element(By.ID, "filter-max").send_keys(str(cut))
    Select(browser.find_element(By.ID, "filter-sort")).select_by_value("confidence")
    loaded = browser.find_element(By.TAG_NAME, "body").get_attribute("data-grid-loaded")
    browser.find_element(By.ID, "apply-filters").click()
    wait_for(
        browser,
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-grid-loaded") != loaded,
    )
    assert browser.find_element(By.ID, "grid-summary").text == f"{len(low)} result(s) match."
    shown = grid_confidences(browser)
    assert shown == sorted(shown) and all(c <= cut + 0.0005 for c in shown)
    assert len(shown) == min(len(low), 48)
    shoot(browser, "results-low-confidence")

    browser.find_element(By.ID, "download-csv").click()
    download = browser.downloads / f"{batch_id}.csv"  # type: ignore[attr-defined]
    wait_for(browser, lambda d: download.exists() and download.stat().st_size > 0)
    rows = list(csv.DictReader(download.read_text().splitlines()))
    assert len(rows) == 200 and {r["status"] for r in rows} == {"succeeded"}
    assert sorted(r["ref"] for r in rows) == sorted(f"{i}.png" for i in range(200))

    # Correct the first prediction shown to its second-best candidate.
    first = browser.find_element(By.CSS_SELECTOR, "#grid .result")
    job_id = first.get_attribute("data-job-id")
    job = http.get(f"{api_url}/v1/jobs/{job_id}").json()
    right = job["result"]["candidates"][1]["sku"]
    first.find_element(By.CSS_SELECTOR, ".correct summary").click()
    first.find_element(By.CSS_SELECTOR, ".correct-sku").send_keys(right)
    first.find_element(By.CSS_SELECTOR, ".correct-save").click()
    wait_for(
        browser,
        lambda d: "Corrected" in first.find_element(By.CSS_SELECTOR, ".correct-status").text,
    )
    standing = http.get(f"{api_url}/v1/jobs/{job_id}/feedback").json()
    assert standing["correction"]["kind"] == "sku" and standing["correction"]["sku"] == right

    # The failing webhook: its log, re-enabling it and replaying the delivery.
    rx.wait_for(3)
    browser.get(f"{api_url}/console/webhooks")
    wait_for(browser, lambda d: "disabled" in d.find_element(By.TAG_NAME, "table").text)
    shoot(browser, "webhooks")
    browser.find_element(By.LINK_TEXT, f"Deliveries of {sub['id']}").click()
    wait_for(browser, lambda d: d.current_url.endswith(f"/console/webhooks/{sub['id']}"))
    codes = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".attempts .code")]
    assert codes == ["500", "500", "500"]
    assert "failed" in browser.find_element(By.ID, "delivery-1").text
    shoot(browser, "webhook-log")
    # each action posts a form and loads the next page: wait for it rather than read at once
    browser.find_element(By.CSS_SELECTOR, ".replay").click()  # refused while disabled
    wait_for(browser, lambda d: "disabled" in d.find_element(By.ID, "notice").text)
    browser.find_element(By.ID, "enable").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "sub-status").text == "active")
    browser.find_element(By.CSS_SELECTOR, ".replay").click()
    wait_for(browser, lambda d: "queued again" in d.find_element(By.ID, "notice").text)
    assert rx.wait_for(4)[-1].event["type"] == "batch.completed"

    def replayed(driver: WebDriver) -> bool:
        driver.refresh()
        return "200" in [c.text for c in driver.find_elements(By.CSS_SELECTOR, ".attempts .code")]

    wait_for(browser, replayed)

    browser.get(f"{api_url}/console/models")
    assert browser.find_element(By.ID, "active-version").text.startswith("v")
    shoot(browser, "models")

    stale = browser.get_cookie("skuai_console")
    browser.find_element(By.ID, "sign-out").click()
    wait_for(browser, lambda d: d.current_url.endswith("/console/sign-in"))
    browser.get(f"{api_url}/console/upload")
    assert browser.current_url.endswith("/console/sign-in")
    # The old cookie is dead on the server too, not just forgotten by the browser.
    replay = requests.get(
        f"{api_url}/console/api/batches/{batch_id}",
        cookies={"skuai_console": stale["value"]},  # type: ignore[index]
        timeout=10,
    )
    assert replay.status_code == 401
    assert no_dialog_ran(browser)


def test_hostile_file_names_stay_text(
    browser: WebDriver,
    api_url: str,
    api_key: str,
    inference_worker: WorkerProcess,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    """A file and a zip entry named like HTML show as text; no script runs."""
    (_, data), (_, other) = distinct_images(tiny_catalog, 2, salt=22)
    hostile = tmp_path / XSS_FILE
    hostile.write_bytes(data)
    archive = write_zip(tmp_path / "hostile.zip", [(XSS_ENTRY, other)])
    sign_in(browser, api_url, api_key)
    batch_id = upload(browser, [hostile, archive])
    refs = {c.text: c for c in browser.find_elements(By.CSS_SELECTOR, "#grid .ref")}
    assert set(refs) == {XSS_FILE, XSS_ENTRY}
    assert not browser.find_elements(By.CSS_SELECTOR, "#grid img[src='x'], #grid svg")
    thumbs = {
        c.find_element(By.CSS_SELECTOR, ".ref").text: c.find_element(By.CSS_SELECTOR, ".thumb")
        for c in browser.find_elements(By.CSS_SELECTOR, "#grid .result")
    }
    # The browser's own copy of the uploaded file; a zip entry has none here.
    assert thumbs[XSS_FILE].get_attribute("src").startswith("blob:")
    assert not thumbs[XSS_ENTRY].get_attribute("src").startswith("blob:")
    assert no_dialog_ran(browser)
    shoot(browser, "results-hostile-names")
    assert_keyboard_reaches_everything(browser)
    batch_page = browser.current_url
    for page in ("upload", "models"):
        browser.get(f"{api_url}/console/{page}")
        assert_keyboard_reaches_everything(browser)
        if page == "upload":  # the batch is listed for coming back to it
            browser.find_element(By.LINK_TEXT, batch_id)

    browser.set_window_size(390, 844)
    try:
        others = ("upload", "webhooks", "models")
        pages = [batch_page, *(f"{api_url}/console/{p}" for p in others)]
        for url in pages:
            browser.get(url)
            if "/batches/" in url:
                wait_for(
                    browser,
                    lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-grid-loaded"),
                )
                browser.execute_script("document.getElementById('grid').scrollIntoView()")
                shoot(browser, "results-390")
            assert browser.execute_script("return window.innerWidth") <= 390
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, f"{url} is {width} px wide at 390 px"
    finally:
        browser.set_window_size(1280, 900)


def assert_keyboard_reaches_everything(driver: WebDriver) -> None:
    """Tab from the top of the page reaches every visible control, each with a focus style."""
    wanted = driver.execute_script(FOCUSABLE_JS)
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    reached = []
    for _ in range(len(wanted) + 3):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        reached.append(driver.switch_to.active_element)
    missing = [e.get_attribute("outerHTML")[:80] for e in wanted if e not in reached]
    assert not missing, missing
    focused = driver.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none"


def test_every_answer_has_a_strict_csp(api_url: str) -> None:
    """No inline script or style is allowed anywhere in the console; /docs keeps its own page."""
    for path in ("/console/sign-in", "/console/static/batch.js"):
        policy = requests.get(f"{api_url}{path}", timeout=10).headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy
    assert requests.get(f"{api_url}/docs/", timeout=10).status_code == 200


def test_posts_without_the_csrf_token_are_refused(api_url: str, api_key: str) -> None:
    client, token = console_client(api_url, api_key)
    created = http.post(
        f"{api_url}/v1/batches", json={"images": [{"url": "http://127.0.0.1:9/x.png"}]}
    ).json()
    cancel = f"{api_url}/console/api/batches/{created['id']}/cancel"
    assert client.post(cancel, timeout=10).status_code == 403
    assert client.post(cancel, headers={"X-CSRF-Token": "forged"}, timeout=10).status_code == 403
    assert client.post(f"{api_url}/console/sign-out", timeout=10).status_code == 403
    # No session, no CSRF token: the sign-in form is refused too (login CSRF).
    assert (
        requests.post(
            f"{api_url}/console/sign-in", data={"api_key": api_key}, timeout=10
        ).status_code
        == 403
    )
    assert client.post(cancel, headers={"X-CSRF-Token": token}, timeout=10).status_code == 200


def test_another_tenants_batch_is_not_found(api_url: str, settings: Settings, api_key: str) -> None:
    created = http.post(
        f"{api_url}/v1/batches", json={"images": [{"url": "http://127.0.0.1:9/x.png"}]}
    ).json()
    other_key = KeyStore(redis.Redis.from_url(settings.redis_url)).create("console-other")
    client, token = console_client(api_url, other_key)
    base = f"{api_url}/console"
    for path in ("", "/grid", "/results.csv"):
        assert (
            client.get(f"{base}/api/batches/{created['id']}{path}", timeout=10).status_code == 404
        )
    assert client.get(f"{base}/batches/{created['id']}", timeout=10).status_code == 404
    cancel = client.post(
        f"{base}/api/batches/{created['id']}/cancel", headers={"X-CSRF-Token": token}, timeout=10
    )
    assert cancel.status_code == 404
    assert http.get(f"{api_url}/v1/batches/{created['id']}").json()["status"] != "canceled"
    # Without a session the JSON endpoints say 401 and the pages send you to sign in.
    assert requests.get(f"{base}/api/batches/{created['id']}", timeout=10).status_code == 401
    page = requests.get(f"{base}/upload", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and page.headers["Location"].endswith("/console/sign-in")


def test_a_bad_key_is_refused_and_kept_out_of_urls(api_url: str) -> None:
    client = requests.Session()
    login = re.search(
        r'name="csrf_token" value="([^"]+)"', client.get(f"{api_url}/console/sign-in").text
    )
    assert login is not None
    answer = client.post(
        f"{api_url}/console/sign-in", data={"api_key": "sk_wrong", "csrf_token": login[1]}
    )
    assert answer.status_code == 401 and "unknown or revoked" in answer.text
    assert "sk_wrong" not in answer.url and "sk_wrong" not in answer.text
    assert 'method="post"' in answer.text


def test_confusion_images_only_of_registered_versions(
    api_url: str, api_key: str, trained: str
) -> None:
    client, _ = console_client(api_url, api_key)
    image = client.get(f"{api_url}/console/models/{trained}/confusion.png", timeout=10)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    for name in ("..", "ACTIVE", "v999", "%2E%2E%2Fregistry"):
        answer = client.get(f"{api_url}/console/models/{name}/confusion.png", timeout=10)
        assert answer.status_code == 404, name
