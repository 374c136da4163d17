"""Which Spark UIs the Jupyter server's proxy serves (uiproxy.UiTargets): the own server's by
default, the user's shared applications only when the operator says `all`, nothing else, and an
unknown mode is off. The proxy itself, in a real Jupyter server before a real Spark UI, is tested
in tests/e2e/test_lab_own_server.py."""

from __future__ import annotations

from typing import Any

import pytest
from sparkscope import uiproxy
from sparkscope.uiproxy import UiTargets, http_target, mode_of

OWN_APP = "local-1795258400000"
SHARED_APP = "app-20261205101010-0001"


class StubOwn:
    def __init__(self, state: str = "running", ui_port: int | None = 4999) -> None:
        self.state, self.ui_port = state, ui_port

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "uiPort": self.ui_port if self.state == "running" else None}


def work() -> dict[str, Any]:
    return {
        "ok": True,
        "applications": [
            {"id": OWN_APP, "uiLink": "http://127.0.0.1:4999"},
            {"id": SHARED_APP, "uiLink": "http://driver.example:4040"},
            {"id": "app-https", "uiLink": "https://driver.example:4443"},
            {"id": "../etc", "uiLink": "http://driver.example:4041"},
        ],
    }


def targets(mode: str, own: StubOwn | None = None, asked: list[int] | None = None) -> UiTargets:
    def ask(port: int) -> str | None:
        if asked is not None:
            asked.append(port)
        return OWN_APP

    return UiTargets(mode, own, work, ask=ask)


def test_modes_fail_closed() -> None:
    assert mode_of(None) == "own" and mode_of("") == "own"
    assert mode_of(" ALL ") == "all" and mode_of("off") == "off"
    assert mode_of("yes") == "off" and mode_of("shared") == "off"


def test_http_targets_only() -> None:
    assert http_target("http://driver:4040") == ("driver", 4040)
    assert http_target("http://driver") == ("driver", 80)
    for bad in ("https://driver:4040", "javascript:alert(1)", "http://", "http://h:99999", ""):
        assert http_target(bad) is None, bad


def test_own_mode_serves_the_own_server_only() -> None:
    asked: list[int] = []
    t = targets("own", StubOwn(), asked)
    assert t.resolve(OWN_APP) == ("127.0.0.1", 4999)
    assert t.resolve(SHARED_APP) is None  # a shared server's UI: not unless the operator says
    assert t.resolve("../etc") is None
    t.resolve(OWN_APP)
    assert asked == [4999]  # the application id is asked once, then cached
    w = work()
    t.annotate(w)
    assert [a.get("uiProxy") for a in w["applications"]] == [
        f"sparkscope/ui/{OWN_APP}/",
        None,
        None,
        None,
    ]


def test_a_stopped_own_server_is_served_no_more() -> None:
    own = StubOwn()
    t = targets("own", own)
    assert t.resolve(OWN_APP)
    own.state = "stopped"
    assert t.resolve(OWN_APP) is None
    assert targets("own", None).resolve(OWN_APP) is None  # the own server turned off


def test_all_mode_adds_the_users_applications_with_http_uis() -> None:
    t = targets("all", StubOwn())
    assert t.resolve(SHARED_APP) == ("driver.example", 4040)
    assert t.resolve("app-https") is None and t.resolve("../etc") is None
    assert t.resolve("app-of-someone-else") is None  # not among this user's applications
    w = work()
    t.annotate(w)
    assert [a.get("uiProxy") is not None for a in w["applications"]] == [True, True, False, False]


@pytest.mark.parametrize("mode", ["off", "bogus"])
def test_off_serves_nothing(mode: str) -> None:
    t = targets(mode_of(mode), StubOwn())
    assert t.resolve(OWN_APP) is None and t.resolve(SHARED_APP) is None
    w = work()
    t.annotate(w)
    assert not any("uiProxy" in a for a in w["applications"])


def test_an_own_ui_that_does_not_answer_is_not_served() -> None:
    t = UiTargets("own", StubOwn(), work, ask=lambda port: None)
    assert t.resolve(OWN_APP) is None
    assert uiproxy.ask_app_id(1) is None  # nothing listens on port 1


def test_redirects_stay_under_the_mount_point() -> None:
    mount = "/user/ivy/sparkscope/ui/local-1"
    hosts = {"jupyter.example:8888", "127.0.0.1:4040"}
    for location, expected in [
        ("http://jupyter.example:8888/jobs/", f"{mount}/jobs/"),  # Jetty's absolute redirect
        ("http://127.0.0.1:4040/jobs/?id=3", f"{mount}/jobs/?id=3"),
        ("/jobs/", f"{mount}/jobs/"),
        (f"{mount}/jobs/", f"{mount}/jobs/"),  # already under it (X-Forwarded-Context): once
        (f"http://jupyter.example:8888{mount}/jobs/", f"{mount}/jobs/"),
        ("https://elsewhere.example/x", "https://elsewhere.example/x"),
        ("jobs/", "jobs/"),
    ]:
        assert uiproxy.mounted_location(location, mount, hosts) == expected, location
