"""The query server serves a dashboard bundle at / after its API: hashed assets cached for a year, index.html
never cached and served for every app path (with a <base> leading back to the app's root, so the app works under
any path prefix), API paths never shadowed; without a bundle the collector starts and says so once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

INDEX = '<!doctype html><html><head><script type="module" src="./assets/index-abc123.js"></script></head></html>'


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "ui"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-abc123.js").write_text("console.log('dashboard')")
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /\n")
    return root


def test_index_and_app_paths_get_index_html_with_a_base_to_the_root(start_collector: Any, bundle: Path) -> None:
    url = start_collector(query={"dashboard": str(bundle)}).query_url
    for path, base in [
        ("/", "./"),
        ("/traces", "./"),
        ("/traces/", "../"),
        ("/traces/5b8e?span=ee", "../"),
        ("/a/b/c", "../../"),
    ]:
        response = httpx.get(url + path, timeout=10)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["content-type"].startswith("text/html")
        assert f'<head><base href="{base}"><script' in response.text, path


def test_hashed_assets_are_immutable_and_other_files_are_revalidated(start_collector: Any, bundle: Path) -> None:
    url = start_collector(query={"dashboard": str(bundle)}).query_url
    asset = httpx.get(f"{url}/assets/index-abc123.js", timeout=10)
    assert asset.status_code == 200 and asset.text == "console.log('dashboard')"
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert httpx.get(f"{url}/assets/index-gone.js", timeout=10).status_code == 404
    robots = httpx.get(f"{url}/robots.txt", timeout=10)
    assert robots.text.startswith("User-agent") and robots.headers["cache-control"] == "no-cache"


def test_the_api_is_not_shadowed(start_collector: Any, bundle: Path) -> None:
    url = start_collector(query={"dashboard": str(bundle)}).query_url
    assert httpx.get(f"{url}/api/v1/traces", timeout=10).json() == {"data": [], "next_cursor": None}
    assert httpx.get(f"{url}/api/services", timeout=10).json()["data"] == ["genai-collector"]
    unknown = httpx.get(f"{url}/api/v1/no-such-thing", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


def test_without_a_bundle_the_collector_starts_and_says_so_once(
    start_collector: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = start_collector(query={"dashboard": str(tmp_path / "not-built")}).query_url
    lines = [record.getMessage() for record in caplog.records if "dashboard" in record.getMessage()]
    assert len(lines) == 1 and "dashboard not served" in lines[0] and "npm run build" in lines[0], lines
    page = httpx.get(url + "/", timeout=10)
    assert page.status_code == 404 and "The dashboard is not built" in page.text
    assert httpx.get(f"{url}/api/v1/traces", timeout=10).status_code == 200
