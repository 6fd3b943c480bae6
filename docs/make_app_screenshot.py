"""The README's screenshot of the web app (docs/images/app.png): the app serving the built-in model
(as ``python -m fast_nst.app`` does without a models/ folder), a photo uploaded and stylized, in a
headless Chromium driven by Selenium (Debian: apt-get install chromium chromium-driver).

    python docs/make_app_screenshot.py PHOTO [--output docs/images/app.png]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fast_nst.commands.app import AppSession, build_app, launch  # noqa: E402
from fast_nst.io.bundled import BUNDLED_STYLE, bundled_model  # noqa: E402

WINDOW = (1200, 800)


def _browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                 "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options)


def _status(driver) -> str:
    return driver.execute_script("const t = document.querySelector('#status textarea'); return t ? t.value : ''")


def screenshot(photo: Path, output: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="fast-nst-shot-") as work:
        os.environ["GRADIO_TEMP_DIR"] = work  # before Gradio is imported, as main() does
        page = build_app(AppSession({f"{BUNDLED_STYLE} (built-in)": bundled_model()}, "cpu", Path(work)))
        url = launch(page, "127.0.0.1", port, block=False)
        driver = _browser()
        wait = WebDriverWait(driver, 120, poll_frequency=0.2)
        try:
            driver.get(url)
            wait.until(lambda d: "one style" in _status(d))
            driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(photo.resolve()))
            wait.until(lambda d: " px." in _status(d))
            driver.find_element(By.CSS_SELECTOR, "#stylize").click()
            wait.until(lambda d: _status(d).startswith("Stylized"))
            wait.until(lambda d: d.execute_script(
                "const i = document.querySelector('#result img'); return i && i.complete && i.naturalWidth"))
            shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        finally:
            driver.quit()
            page.close()
    # A 256-colour PNG: a fraction of the full-colour size, the photos still clear.
    shot.quantize(256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)
    print(f"Saved {output} ({output.stat().st_size / 1e3:.0f} KB)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photo", type=Path, help="the photo to stylize on the page")
    p.add_argument("--output", type=Path, default=REPO / "docs" / "images" / "app.png")
    args = p.parse_args()
    screenshot(args.photo, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
