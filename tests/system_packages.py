"""Debian packages the browser tests need: installed on first use when running as root."""

from __future__ import annotations

import os
import shutil
import subprocess

BROWSER_PACKAGES = ("chromium", "chromium-driver")


def find_chromium() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    return browser, shutil.which("chromedriver")


def ensure_chromium() -> tuple[str, str]:
    """Paths of Chromium and ChromeDriver, installing Debian's packages if they are missing and we may."""
    browser, driver = find_chromium()
    if browser and driver:
        return browser, driver
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *BROWSER_PACKAGES], check=True, env=env, capture_output=True)
        browser, driver = find_chromium()
    if not (browser and driver):
        raise RuntimeError(
            "browser tests need headless Chromium and ChromeDriver: install Debian's "
            f"{' and '.join(BROWSER_PACKAGES)} (.ci/run does this)"
        )
    return browser, driver


def install_debian_packages(*packages: str) -> bool:
    """Install Debian packages with apt-get when running as root; False when we may not (the caller reports it)."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env, capture_output=True)
    return True
