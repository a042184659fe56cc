"""Loads dashboard pages in headless Chromium (Debian's chromium and chromedriver, over
WebDriver) and reports what a user would see, as JSON on stdout, one object per page:

  {"path", "title", "console": [errors], "requests": [urls], "off_origin": [urls],
   "failed": [urls with status >= 400 or a network error], "bytes": transferred bytes,
   "charts": {id: drawn points}, "markers": [{"kind", "t"}], "causes": [objects],
   "verdict", "error_text", "screenshot"}

Usage: browse.py BASE_URL OUT_DIR PATH...  (each PATH like /services/llama-70b).
The Rust test decides what is right; this script only looks. Every wait is bounded.
"""

import json
import sys
from urllib.parse import urlparse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1800", "--hide-scrollbars", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-default-apps", "--metrics-recording-only"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    d.set_page_load_timeout(30)
    return d


def network(d, base):
    """Requests of the page from the performance log: URL, status, bytes."""
    reqs, failed, total = {}, [], 0
    for entry in d.get_log("performance"):
        m = json.loads(entry["message"])["message"]
        method, p = m.get("method"), m.get("params", {})
        if method == "Network.requestWillBeSent":
            reqs[p["requestId"]] = p["request"]["url"]
        elif method == "Network.responseReceived":
            if p["response"]["status"] >= 400:
                failed.append(f'{p["response"]["url"]} {p["response"]["status"]}')
        elif method == "Network.loadingFinished":
            total += int(p.get("encodedDataLength", 0))
        elif method == "Network.loadingFailed":
            failed.append(f'{reqs.get(p["requestId"], "?")} {p.get("errorText")}')
    urls = sorted(set(reqs.values()))
    origin = urlparse(base).netloc
    off = [u for u in urls if not u.startswith("data:") and urlparse(u).netloc != origin]
    return urls, off, failed, total


def look(d, base, out, path, n):
    d.get_log("performance")  # drop what came before
    d.get(base + path)
    page = {"path": path, "title": d.title}
    page["console"] = [e["message"] for e in d.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    page["requests"], page["off_origin"], page["failed"], page["bytes"] = network(d, base)
    page["charts"] = {f.get_attribute("id"): int(f.get_attribute("data-points"))
                      for f in d.find_elements(By.CSS_SELECTOR, "figure.chart")}
    page["markers"] = [{"kind": g.get_attribute("data-kind"), "t": int(g.get_attribute("data-t"))}
                       for g in d.find_elements(By.CSS_SELECTOR, "figure#latency g.marker")]
    page["causes"] = [e.text for e in d.find_elements(By.CSS_SELECTOR, "li.cause .obj")]
    page["common"] = [" ".join(td.text for td in tr.find_elements(By.CSS_SELECTOR, "td"))
                      for tr in d.find_elements(By.CSS_SELECTOR, "table.common tbody tr")]
    page["canary"] = [" ".join(td.text for td in tr.find_elements(By.CSS_SELECTOR, "td"))
                      for tr in d.find_elements(By.CSS_SELECTOR, "table.canary tbody tr")]
    page["gpus"] = [" ".join(td.text for td in tr.find_elements(By.CSS_SELECTOR, "td"))
                    for tr in d.find_elements(By.CSS_SELECTOR, "table.gpus tbody tr")]
    v = d.find_elements(By.CSS_SELECTOR, "h2.verdict")
    page["verdict"] = v[0].text if v else None
    e = d.find_elements(By.CSS_SELECTOR, "#error")
    page["error_text"] = e[0].text if e else None
    page["badges"] = [b.text for b in d.find_elements(By.CSS_SELECTOR, "a.badge")]
    # A status the page itself shows (error pages put it in the title).
    shot = f"{out}/{n:02d}-{path.strip('/').replace('/', '_').split('?')[0] or 'overview'}.png"
    d.set_window_size(1400, max(900, min(6000, d.execute_script("return document.body.scrollHeight") + 40)))
    d.save_screenshot(shot)
    d.set_window_size(1400, 1800)
    page["screenshot"] = shot
    return page


def main():
    base, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    d = driver()
    try:
        pages = [look(d, base, out, p, i) for i, p in enumerate(paths)]
    finally:
        d.quit()
    json.dump(pages, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
