"""A stand-in for a web browser, for completing MSAL's interactive flow against the sandbox.

Use it as the ``BROWSER`` command::

    BROWSER="python -m dgprov_sandbox.headless_browser --cafile /tmp/.../ca.pem %s"

It fetches the URL, follows redirects, and submits the first form of each HTML page it gets
(the sandbox's ``form_post`` answer, or its sign-in chooser with the first user selected), until
a page has no form. Python's ``webbrowser`` waits for a ``BROWSER`` command to exit while MSAL
waits for the browser before it starts answering on its loopback port, so the command returns
at once and does the browsing in a detached child process.
"""

from __future__ import annotations

import argparse
import ssl
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx

MAX_STEPS = 10


class _FirstForm(HTMLParser):
    """The first form of a page: action, method, and the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._done = False
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if self._done:
            return
        if tag == "form" and self.action is None:
            self._in_form = True
            self.action = values.get("action", "")
            self.method = values.get("method", "get").lower()
        elif self._in_form and tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")
        elif self._in_form and tag == "select" and values.get("name"):
            self._select = values["name"]
        elif self._in_form and tag == "option" and self._select and self._select not in self.fields:
            self.fields[self._select] = values.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._select and self.fields.get(self._select) == "":
            self.fields[self._select] = data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "form" and self._in_form:
            self._in_form = False
            self._done = True


def browse(url: str, cafile: str | None) -> int:
    """Visit ``url`` like a person clicking "continue" on every page; 0 when a page was reached."""
    verify = ssl.create_default_context(cafile=cafile) if cafile else True
    with httpx.Client(verify=verify, timeout=30, follow_redirects=False) as client:
        method, data = "GET", None
        for _ in range(MAX_STEPS):
            response = client.request(method, url, data=data)
            if response.is_redirect:
                url, method, data = urljoin(url, response.headers["location"]), "GET", None
                continue
            form = _FirstForm()
            form.feed(response.text)
            if form.action is None:
                return 0 if response.is_success else 1
            url = urljoin(url, form.action)
            method, data = ("POST", form.fields) if form.method == "post" else ("GET", None)
            if method == "GET":
                url = str(httpx.URL(url, params=form.fields))
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cafile", help="CA bundle for https URLs (the sandbox's ca_bundle)")
    parser.add_argument("--foreground", action="store_true", help="browse now instead of detaching")
    parser.add_argument("url")
    args = parser.parse_args(argv)
    if args.foreground:
        return browse(args.url, args.cafile)
    command = [sys.executable, "-m", "dgprov_sandbox.headless_browser", "--foreground", args.url]
    if args.cafile:
        command[3:3] = ["--cafile", args.cafile]
    subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
