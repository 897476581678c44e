"""The person's page in a real headless browser (Debian's chromium + chromedriver, driven by selenium) against the
real service (uvicorn in a subprocess on loopback): sign in with a person key, see the profile, undo a judgment,
download, reset, delete, and another person's key sees nothing.

Screenshots go to ``$PERSON_PAGE_SHOTS`` (default: ``<tmp>/personalign-person-page``). Skips when chromium,
chromedriver or selenium is absent (``apt-get install chromium chromium-driver``; ``pip install selenium``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from personalign.experiments.models import train_small_model
from personalign.models import load_model
from personalign.serve import db as sdb
from personalign.serve.launch import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PROMPT = "How should I plan a weekend trip?"
PAIRS = [
    ("Pick one town, book a room near the station and leave the schedule open.", "Wing it."),
    ("Go.", "Make a spreadsheet with every train, museum opening hour and restaurant booking for both days."),
    ("Ask a friend who lives there for three places they love.", "Read every review site first."),
]
SHOTS = Path(os.environ.get("PERSON_PAGE_SHOTS") or Path(tempfile.gettempdir()) / "personalign-person-page")


@dataclass
class Site:
    proc: ServerProcess
    db_path: Path
    admin: dict[str, str]
    model: Any

    @property
    def url(self) -> str:
        return self.proc.url

    def api(self, method: str, path: str, key: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers=key or self.admin, timeout=30.0, **kw)

    def key(self, person: str) -> str:
        r = self.api("POST", f"/v1/persons/{person}/keys", json={"label": "browser test"})
        assert r.status_code == 201, r.text
        return r.json()["key"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("page")
    model_dir = train_small_model(tmp / "model", rank=4, seed=0)
    admin = "adm-" + secrets.token_hex(16)
    db_path = tmp / "serve.db"
    # the "rules" preset: pattern constraints and a trust region, so the page has the bounds' effect to show
    proc = ServerProcess(
        model_dir, str(db_path), admin, policy="rules", env={"PERSONALIGN_CACHE": str(tmp / "cache")}
    ).start()
    try:
        yield Site(proc, db_path, {"Authorization": f"Bearer {admin}"}, load_model(model_dir))
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[tuple[Any, Path]]:
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1800", "--no-first-run", "--disable-extensions"):  # fmt: skip
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager must not look anything up
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver, downloads
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def wait_for(driver: Any, cond: Any, timeout: float = 15.0) -> Any:
    return WebDriverWait(driver, timeout).until(cond)


def sign_in(driver: Any, site: Site, person: str, key: str) -> None:
    driver.get(f"{site.url}/people/{person}")
    field = driver.find_element(By.ID, "key")
    assert driver.find_element(By.CSS_SELECTOR, "label[for=key]").text == "Your API key"
    field.send_keys(key)
    driver.find_element(By.ID, "signin-button").click()


def status_says(text: str) -> Any:
    return EC.text_to_be_present_in_element((By.ID, "status"), text)


def fold(model: Any, start: Any, person: str, pairs: list[tuple[str, str]]) -> Any:
    post = start
    for ch, rj in pairs:
        df = pd.DataFrame(
            [(person, PROMPT, ch, rj, False, 1.0)],
            columns=["user_id", "prompt", "chosen", "rejected", "tie", "weight"],
        )
        post = model.update(post, df)
    return post


def confirm(driver: Any) -> None:
    wait_for(driver, EC.visibility_of_element_located((By.ID, "confirm-ok"))).click()


def person_rows(site: Site, person: str) -> dict[str, int]:
    engine = sdb.make_engine(site.db_path, pool_size=1)
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.execute(
                    select(func.count()).select_from(t).where(t.c.person_id == person)
                ).scalar_one()
                for t in (sdb.persons, sdb.judgments, sdb.api_keys)
            }
    finally:
        engine.dispose()


SAMPLE_EXPLANATION = {
    "summary": "You lean towards short, plain answers.",
    "directions": [
        {"name": "concise vs elaborate", "summary": "You prefer short answers.", "sd": 0.31,
         "correlates": {"length": -0.8}},
        {"name": "formal vs casual", "summary": "No clear preference yet.", "sd": 0.92},
    ],
    "bounds": {"summary": "The bounds changed none of your last answers.", "changed": 0},
    "monitors": {"bubble": {"flag": True, "entropy_ratio": 0.4}},
}  # fmt: skip

# answers the page's profile requests with SAMPLE_EXPLANATION added, then signs out
PATCH_FETCH = r"""
const sample = arguments[0], orig = window.fetch;
window.realFetch = orig;
window.fetch = async (url, opts) => {
  const resp = await orig(url, opts);
  if (!/\/v1\/persons\/[^\/?]+$/.test(url) || (opts && opts.method !== "GET")) return resp;
  const body = await resp.json();
  body.explanation = sample;
  return new Response(JSON.stringify(body), {status: resp.status, headers: resp.headers});
};
document.body.dataset.loaded = "";
document.getElementById("signout").click();
"""


def show_sample_explanation(driver: Any, key: str) -> None:
    """Before the profile carries an ``explanation``: check that the page renders one (the fields the profile
    endpoint is to add) by adding it to the page's profile responses, then signing out and in again."""
    driver.execute_script(PATCH_FETCH, SAMPLE_EXPLANATION)
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "signin-button").click()
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
    shown = driver.find_elements(By.CSS_SELECTOR, "#belief ol.directions > li")
    names = [li.find_element(By.TAG_NAME, "h3").text for li in shown]
    assert names == ["concise vs elaborate", "formal vs casual"]
    assert "Uncertainty (standard deviation): 0.31" in shown[0].text
    assert "You lean towards short, plain answers." in driver.find_element(By.ID, "belief").text
    assert "The bounds changed none of your last answers." in driver.find_element(By.ID, "bounds").text
    assert "Filter bubble: warning" in driver.find_element(By.ID, "monitors").text
    shot(driver, "01b-sample-explanation-rendered")
    # back to the real profile for the rest of the test
    driver.execute_script(
        "window.fetch = window.realFetch; document.body.dataset.loaded = '';"
        "document.getElementById('signout').click();"
    )
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "signin-button").click()
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
    assert not driver.find_elements(By.CSS_SELECTOR, "#belief ol.directions")


def test_person_page_in_a_real_browser(site: Site, browser: tuple[Any, Path]) -> None:
    driver, downloads = browser
    model = site.model
    u = sorted(model.user_units_)[0]  # trained on: their page starts from what the model learned
    key = site.key(u)
    ids = []
    for ch, rj in PAIRS:
        r = site.api("POST", f"/v1/persons/{u}/feedback", json={"kind": "comparison", "prompt": PROMPT,
                                                                 "chosen": ch, "rejected": rj})  # fmt: skip
        ids.append(r.json()["judgment_id"])

    # ---- sign in and see the profile
    sign_in(driver, site, u, key)
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Your preferences")
    origin = driver.find_element(By.ID, "origin").text
    assert "trained on your earlier judgments" in origin and "3 judgments" in origin
    rows = driver.find_elements(By.CSS_SELECTOR, "#judgments tbody tr")
    assert [int(r.get_attribute("data-judgment-id")) for r in rows] == ids
    assert PAIRS[0][0] in rows[0].text
    belief = driver.find_element(By.ID, "belief").text
    assert "4 personal weights" in belief
    profile = site.api("GET", f"/v1/persons/{u}").json()
    explanation = profile.get("explanation")
    if explanation and explanation.get("directions"):  # the named directions, when the profile explains them
        shown = driver.find_elements(By.CSS_SELECTOR, "#belief ol.directions > li")
        assert len(shown) == len(explanation["directions"])
        first = explanation["directions"][0]
        assert first["summary"] in shown[0].text and first["high_end"] in shown[0].text
    assert "value lock-in" in driver.find_element(By.ID, "monitors").text.lower()
    tr = profile["monitors"]["trust_region"]
    bounds = driver.find_element(By.ID, "bounds").text
    assert ("further from the population than the service allows" in bounds) == tr["outside"]
    assert f"at most {tr['rho']:g}" in bounds or tr["outside"]
    shot(driver, "01-signed-in-profile")
    if not explanation:
        show_sample_explanation(driver, key)

    # ---- undo the middle judgment: the posterior equals folding the other two onto the learned posterior
    driver.find_element(By.CSS_SELECTOR, f'tr[data-judgment-id="{ids[1]}"] button.undo').click()
    wait_for(driver, status_says(f"Judgment {ids[1]} undone"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#judgments tbody tr")
    assert [int(r.get_attribute("data-judgment-id")) for r in rows] == [ids[0], ids[2]]
    stored = site.api("GET", f"/v1/persons/{u}/export").json()["stored"]["posterior"]
    want = fold(model, model.posterior(u), u, [PAIRS[0], PAIRS[2]])
    assert np.allclose(stored["mean"], want.mean, atol=1e-8) and np.allclose(
        stored["cov"], want.cov, atol=1e-8
    )
    shot(driver, "02-after-undo")

    # ---- download everything stored
    driver.find_element(By.ID, "download").click()
    wait_for(driver, status_says("Download started"))
    deadline = time.monotonic() + 15
    files: list[Path] = []
    while time.monotonic() < deadline and not files:
        files = [p for p in downloads.glob("*.json")]
        time.sleep(0.1)
    assert [p.name for p in files] == [f"personalign-{u}.json"]
    export = json.loads(files[0].read_text())
    assert export["person_id"] == u and [j["id"] for j in export["judgments"]] == [ids[0], ids[2]]
    assert [k["label"] for k in export["keys"]] == ["browser test"] and key not in files[0].read_text()

    # ---- reset to the population (after a confirm)
    driver.find_element(By.ID, "reset").click()
    confirm(driver)
    wait_for(driver, status_says("Reset done"))
    prof = site.api("GET", f"/v1/persons/{u}").json()
    assert prof["source"] == "prior" and prof["n_judgments"] == 0
    assert np.allclose(prof["posterior"]["mean"], model.prior().mean)
    assert "You reset your profile" in driver.find_element(By.ID, "origin").text
    assert driver.find_element(By.ID, "judgments-summary").text == "No judgments stored."
    shot(driver, "03-after-reset")

    # ---- another person's key sees nothing of this person
    victim = sorted(model.user_units_)[1]
    site.key(victim)
    secret = "My private judgment text nobody else may read."
    site.api("POST", f"/v1/persons/{victim}/feedback", json={"kind": "comparison", "prompt": PROMPT,
                                                             "chosen": secret, "rejected": "x"})  # fmt: skip
    driver.execute_script("window.open('about:blank', '_blank');")
    driver.switch_to.window(driver.window_handles[-1])
    sign_in(driver, site, victim, key)  # u's key on the victim's page
    err = wait_for(driver, EC.visibility_of_element_located((By.ID, "error")))
    assert "belongs to someone else" in err.text
    assert not driver.find_element(By.ID, "content").is_displayed()
    assert secret not in driver.page_source and PAIRS[0][0] not in driver.page_source
    shot(driver, "04-other-person-denied")
    driver.close()
    driver.switch_to.window(driver.window_handles[0])

    # ---- delete everything (after a confirm), verified in the database
    driver.find_element(By.ID, "delete").click()
    wait_for(driver, EC.visibility_of_element_located((By.ID, "confirm-ok")))
    assert "cannot be undone" in driver.find_element(By.ID, "confirm-text").text
    shot(driver, "05a-delete-confirm")
    confirm(driver)
    wait_for(driver, status_says("Everything stored about you was deleted"))
    assert person_rows(site, u) == {"persons": 0, "judgments": 0, "api_keys": 0}
    assert person_rows(site, victim)["judgments"] == 1  # nobody else's data went
    assert site.api("GET", f"/v1/persons/{u}", key={"Authorization": f"Bearer {key}"}).status_code == 401
    assert driver.execute_script(f"return sessionStorage.getItem('personalign:key:{u}')") is None
    shot(driver, "05b-after-delete")
