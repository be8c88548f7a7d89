"""The report in a real headless browser: Debian's Chromium driven by Selenium through
``/usr/bin/chromedriver`` (nothing downloaded: the driver and browser paths are given, so
Selenium Manager never runs; Chromium's background networking is off).

:func:`check_report` opens ``index.html`` via ``file://`` and returns every problem it finds:
a console message of level SEVERE, an ``<audio>`` that does not load, whose ``play()`` does
not resolve, or whose duration differs from its WAV's by more than :data:`DURATION_TOL_S`,
and an ``<img>`` that does not decode. The report of ``test_report.build_report_inputs`` must
have none; the same report with one WAV deleted, or with a script error, must have exactly
that one reported (the check can fail).

Without chromium, chromedriver or selenium the tests skip, and fail when ``CI`` is set (the
CI installs them: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
import soundfile as sf

from dose_model.evaluate.report import write_report
from tests import skip_unless_ci
from tests.dose_model.test_report import build_report_inputs

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DURATION_TOL_S = 1e-3
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)

# For every <audio>: load it, wait for its metadata (or its error), play() muted, pause; then
# let every <img> decode. Returns {audio: [{src, duration, played, error}], img: [{src, width}]}.
_PROBE = """
const done = arguments[arguments.length - 1];
const loaded = (a) => new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('no metadata after 5 s')), 5000);
  a.addEventListener('loadedmetadata', () => { clearTimeout(t); resolve(); }, {once: true});
  a.addEventListener('error', () => {
    clearTimeout(t);
    reject(new Error('media error ' + (a.error ? a.error.code + ' ' + a.error.message : '?')));
  }, {once: true});
  a.load();
});
(async () => {
  const out = {audio: [], img: []};
  for (const a of document.querySelectorAll('audio')) {
    const r = {src: a.getAttribute('src'), duration: null, played: false, error: null};
    try {
      a.muted = true;
      await loaded(a);
      r.duration = a.duration;
      await a.play();
      r.played = true;
      a.pause();
    } catch (e) { r.error = String(e); }
    out.audio.push(r);
  }
  for (const i of document.querySelectorAll('img')) {
    try { await i.decode(); } catch (e) {}
    out.img.push({src: i.getAttribute('src'), width: i.naturalWidth});
  }
  return out;
})().then(done, (e) => done({fatal: String(e)}));
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the Python package selenium")
    if missing:
        reason = (
            f"the report's browser test needs {', '.join(missing)} "
            "(apt-get install chromium chromium-driver; pip install -e '.[test]')"
        )
        skip_unless_ci(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    d.set_script_timeout(60)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict[Path, float]]:
    folder = tmp_path_factory.mktemp("report")
    table, examples, settings, durations = build_report_inputs(folder)
    write_report(folder, table, examples, settings)
    return folder, durations


def check_report(driver, index: Path) -> tuple[list[str], dict]:
    """Open ``index`` in the browser and return (problems, what the page reported)."""
    driver.get(index.resolve().as_uri())
    seen = driver.execute_async_script(_PROBE)
    problems = []
    if "fatal" in seen:
        return [f"the probe failed: {seen['fatal']}"], seen
    for a in seen["audio"]:
        wav = index.parent / unquote(a["src"])
        if a["error"] or not a["played"]:
            problems.append(f"audio {unquote(a['src'])}: {a['error'] or 'play() did not resolve'}")
            continue
        want = sf.info(str(wav)).frames / sf.info(str(wav)).samplerate
        if abs(a["duration"] - want) > DURATION_TOL_S:
            problems.append(
                f"audio {unquote(a['src'])}: duration {a['duration']} s, the file has {want} s"
            )
    for i in seen["img"]:
        if not i["width"]:
            problems.append(f"img {i['src']}: does not decode")
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console: {entry['message']}")
    return problems, seen


def _variant(report, tmp_path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(report[0], folder)
    return folder


def test_report_plays_every_clip_with_its_duration(driver, report):
    folder, durations = report
    problems, seen = check_report(driver, folder / "index.html")
    assert problems == []
    assert {Path(unquote(a["src"])) for a in seen["audio"]} == set(durations)
    assert len(seen["audio"]) == len(durations) == 19
    for a in seen["audio"]:  # the check above, stated directly
        assert abs(a["duration"] - durations[Path(unquote(a["src"]))]) <= DURATION_TOL_S
    assert len(seen["img"]) == 20 and all(i["width"] > 0 for i in seen["img"])


def test_a_missing_wav_is_reported(driver, report, tmp_path):
    folder = _variant(report, tmp_path)
    gone = next(p for p in sorted(report[1]) if p.name.endswith(".truth.wav"))
    (folder / gone).unlink()
    problems, _ = check_report(driver, folder / "index.html")
    assert problems, "a deleted WAV went unnoticed"
    assert any(p.startswith(f"audio {gone.as_posix()}: Error: media error") for p in problems), (
        problems
    )
    assert all(gone.name in unquote(p) for p in problems), problems  # nothing else is wrong


def test_a_script_error_is_reported(driver, report, tmp_path):
    folder = _variant(report, tmp_path)
    index = folder / "index.html"
    page = index.read_text(encoding="utf-8")
    index.write_text(
        page.replace("</body>", "<script>undefinedFunction()</script></body>"), encoding="utf-8"
    )
    problems, _ = check_report(driver, index)
    assert len(problems) == 1 and problems[0].startswith("console: "), problems
    assert "undefinedFunction is not defined" in problems[0]
