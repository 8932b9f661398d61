"""The AtHoc simulator, exercised with plain ``requests`` over real HTTPS on loopback."""

from __future__ import annotations

import contextlib
import csv
import os
import queue
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from bobosync.simulator import (
    EXPORT_HEADER,
    SIM_CREDENTIALS,
    AtHocSimulator,
    Criteria,
    CriteriaError,
    export_row,
    generate_bobo_files,
    make_users,
    parse_criteria,
    write_bobo_file,
)
from bobosync.simulator.criteria import And, Comparison, Or

if TYPE_CHECKING:
    from tests.conftest import TLSCerts

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN_PATH = "/AuthServices/Auth/connect/token"
ORG = SIM_CREDENTIALS["org_code"]
SEARCH_PATH = f"/api/v2/orgs/{ORG}/users/search/basic"
SYNC_PATH = f"/api/v2/orgs/{ORG}/users/SyncByCommonNames"


def token_form(**overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "password",
        "client_id": SIM_CREDENTIALS["client_id"],
        "client_secret": SIM_CREDENTIALS["client_secret"],
        "username": SIM_CREDENTIALS["username"],
        "password": SIM_CREDENTIALS["password"],
        "acr_values": f"tenant:{ORG}",
        "scope": SIM_CREDENTIALS["scope"],
    }
    form.update(overrides)
    return form


class Api:
    """A thin ``requests`` helper around one simulator.

    ``verify`` goes with every request: a ``Session.verify`` is overridden by the
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE environment variables when those are set.
    """

    def __init__(self, sim: AtHocSimulator, verify: Any) -> None:
        self.sim = sim
        self.verify = verify
        self.session = requests.Session()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.get(self.sim.url + path, verify=self.verify, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.post(self.sim.url + path, verify=self.verify, **kwargs)

    def token(self, **overrides: str) -> requests.Response:
        return self.post(TOKEN_PATH, data=token_form(**overrides))

    def login(self) -> str:
        response = self.token()
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"
        return token

    def search(self, timeout: float = 5, **params: Any) -> requests.Response:
        return self.get(SEARCH_PATH, params=params, timeout=timeout)

    def sync(self, rows: Any, existing_only: Optional[str] = "true") -> requests.Response:
        params = {} if existing_only is None else {"syncExistingUsersOnly": existing_only}
        return self.post(SYNC_PATH, params=params, json=rows)

    def logins(self, **params: Any) -> list[str]:
        response = self.search(Fields="LOGIN_ID", Limit=1000, **params)
        assert response.status_code == 200, response.text
        return [u["LOGIN_ID"] for u in response.json()["Users"]]


@pytest.fixture
def api(simulator: AtHocSimulator, tls_certs: TLSCerts) -> Iterator[Api]:
    helper = Api(simulator, str(tls_certs.ca_pem))
    helper.login()
    yield helper
    helper.session.close()


@pytest.fixture
def anon(simulator: AtHocSimulator, tls_certs: TLSCerts) -> Iterator[Api]:
    helper = Api(simulator, str(tls_certs.ca_pem))
    yield helper
    helper.session.close()


def login_of(i: int) -> str:
    return f"user{i:05d}@force.example"


# ---------------------------------------------------------------------------- token


def test_token_success_and_journal_redaction(simulator: AtHocSimulator, anon: Api) -> None:
    response = anon.token(scope="openid profile athoc.iws.web.api offline_access")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 32
    assert simulator.tokens_issued == 1
    (entry,) = simulator.requests_to("connect/token")
    assert entry.method == "POST" and entry.status == 200 and entry.auth_ok
    assert entry.form["password"] == "***"
    assert entry.form["client_secret"] == "***"
    assert entry.form["username"] == SIM_CREDENTIALS["username"]
    assert SIM_CREDENTIALS["password"] not in repr(simulator.journal)
    assert SIM_CREDENTIALS["client_secret"] not in repr(simulator.journal)


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"password": "wrong"}, 400, "invalid_grant"),
        ({"username": "someone-else"}, 400, "invalid_grant"),
        ({"acr_values": "tenant:OTHERORG"}, 400, "invalid_grant"),
        ({"acr_values": ""}, 400, "invalid_grant"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "other-client"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"scope": "openid profile"}, 400, "invalid_scope"),
    ],
)
def test_token_refused(
    simulator: AtHocSimulator, anon: Api, overrides: dict[str, str], status: int, error: str
) -> None:
    response = anon.token(**overrides)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert "access_token" not in response.json()
    assert simulator.tokens_issued == 0
    (entry,) = simulator.journal
    assert entry.status == status and not entry.auth_ok


def test_token_needs_a_form_body(simulator: AtHocSimulator, anon: Api) -> None:
    response = anon.post(TOKEN_PATH, json=token_form())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert anon.get(TOKEN_PATH).status_code == 405


def test_credentials_can_be_overridden() -> None:
    with pytest.raises(TypeError):
        AtHocSimulator(colour="blue")
    sim = AtHocSimulator(make_users(3), org_code="NORTH", password="pa55")
    with sim:
        helper = Api(sim, True)
        assert helper.token(acr_values="tenant:NORTH").status_code == 400  # old password
        assert helper.token(password="pa55").status_code == 400  # old org
        ok = helper.token(password="pa55", acr_values="tenant:NORTH")
        assert ok.status_code == 200
        helper.session.headers["Authorization"] = "Bearer " + ok.json()["access_token"]
        assert helper.get("/api/v2/orgs/NORTH/users/search/basic").json()["TotalUsers"] == 3
        assert helper.search().status_code == 404  # SIMORG is not this server's org
    assert SIM_CREDENTIALS["org_code"] == "SIMORG"


def test_api_calls_need_a_valid_bearer_token(simulator: AtHocSimulator, anon: Api) -> None:
    response = anon.search()
    assert response.status_code == 401
    assert "Message" in response.json()
    anon.session.headers["Authorization"] = "Bearer not-a-token"
    assert anon.search().status_code == 401
    assert anon.sync([{"LOGIN_ID": login_of(1), "On-Duty-DTG": "x"}]).status_code == 401
    assert simulator.get_user(login_of(1)) == {**make_users(1)[0]}
    assert [e.auth_ok for e in simulator.journal] == [False, False, False]
    assert [e.status for e in simulator.journal] == [401, 401, 401]
    anon.login()
    assert anon.search().status_code == 200
    assert simulator.journal[-1].auth_ok


def test_tokens_expire(tls_certs: TLSCerts) -> None:
    sim = AtHocSimulator(
        make_users(2),
        certfile=tls_certs.certfile,
        keyfile=tls_certs.keyfile,
        token_lifetime=0.4,
    )
    with sim:
        helper = Api(sim, str(tls_certs.ca_pem))
        assert helper.token().json()["expires_in"] == 0  # int(0.4)
        helper.login()
        assert helper.search().status_code == 200
        time.sleep(0.5)
        assert helper.search().status_code == 401
        helper.login()
        assert helper.search().status_code == 200
        assert sim.tokens_issued == 3


def test_expire_tokens_invalidates_every_token(simulator: AtHocSimulator, api: Api) -> None:
    assert api.search().status_code == 200
    simulator.expire_tokens()
    assert api.search().status_code == 401
    api.login()
    assert api.search().status_code == 200


# ---------------------------------------------------------------------------- routing


def test_unknown_org_route_and_method(api: Api) -> None:
    assert api.get("/api/v2/orgs/NOPE/users/search/basic").status_code == 404
    assert api.get(f"/api/v2/orgs/{ORG}/users/nothing").status_code == 404
    assert api.get("/somewhere/else").status_code == 404
    wrong = api.get(SYNC_PATH)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert api.post(SEARCH_PATH, json={}).status_code == 405
    # Path matching is case-insensitive, like IIS.
    assert api.get(f"/API/v2/orgs/{ORG}/Users/Search/Basic").status_code == 200


# ---------------------------------------------------------------------------- search/basic


def test_paging_uses_offset_as_page_index(simulator: AtHocSimulator, api: Api) -> None:
    pages = []
    for offset in range(4):
        response = api.search(Fields="LOGIN_ID,Collar-Number", Limit=20, Offset=offset)
        assert response.status_code == 200
        pages.append(response.json())
    assert [p["FetchedRecords"] for p in pages] == [20, 20, 10, 0]
    assert [len(p["Users"]) for p in pages] == [20, 20, 10, 0]
    assert {p["TotalUsers"] for p in pages} == {50}
    logins = [u["LOGIN_ID"] for p in pages for u in p["Users"]]
    assert logins == [login_of(i) for i in range(1, 51)]  # sorted, distinct, complete
    assert pages[1]["Users"][0] == {"LOGIN_ID": login_of(21), "Collar-Number": "00021"}


def test_default_limit_and_max_limit(tls_certs: TLSCerts) -> None:
    sim = AtHocSimulator(make_users(130), max_limit=50)
    with sim:
        helper = Api(sim, True)
        helper.login()
        body = helper.search(Fields="LOGIN_ID").json()  # no Limit: 100, clamped to 50
        assert body["FetchedRecords"] == 50 and body["TotalUsers"] == 130
        sim.max_limit = 1000
        assert helper.search(Fields="LOGIN_ID").json()["FetchedRecords"] == 100
        # Parameter names are case-insensitive.
        assert helper.search(fields="LOGIN_ID", limit=7, offset=2).json()["Users"][0] == {"LOGIN_ID": login_of(15)}


@pytest.mark.parametrize("params", [{"Limit": "many"}, {"Limit": 0}, {"Offset": -1}])
def test_bad_paging_parameters(api: Api, params: dict[str, Any]) -> None:
    assert api.search(**params).status_code == 400


def test_fields_and_missing_attributes(simulator: AtHocSimulator, api: Api) -> None:
    simulator.add_user({"LOGIN_ID": "aaa@force.example", "FIRSTNAME": "No", "LASTNAME": "Collar"})
    users = api.search(Fields="LOGIN_ID,Collar-Number,FIRSTNAME,Unknown-Attr", Limit=2).json()
    first, second = users["Users"]
    assert first == {"LOGIN_ID": "aaa@force.example", "FIRSTNAME": "No"}
    assert set(second) == {"LOGIN_ID", "Collar-Number", "FIRSTNAME"}
    assert users["TotalUsers"] == 51
    # Empty values are returned as "" unless the server is told to leave them out.
    page = api.search(Fields="LOGIN_ID,On-Duty-DTG", Limit=1, Offset=1).json()
    assert page["Users"] == [{"LOGIN_ID": login_of(1), "On-Duty-DTG": ""}]
    simulator.omit_empty_fields = True
    page = api.search(Fields="LOGIN_ID,On-Duty-DTG", Limit=1, Offset=1).json()
    assert page["Users"] == [{"LOGIN_ID": login_of(1)}]


def test_ignore_offset_repeats_the_first_page(simulator: AtHocSimulator, api: Api) -> None:
    page0 = api.search(Fields="LOGIN_ID", Limit=10, Offset=0).json()
    simulator.ignore_offset = True
    page1 = api.search(Fields="LOGIN_ID", Limit=10, Offset=1).json()
    assert page1 == page0
    simulator.ignore_offset = False
    assert api.search(Fields="LOGIN_ID", Limit=10, Offset=1).json() != page0


def test_omit_total_users(simulator: AtHocSimulator, api: Api) -> None:
    assert "TotalUsers" in api.search(Limit=5).json()
    simulator.omit_total_users = True
    body = api.search(Limit=5).json()
    assert "TotalUsers" not in body
    assert body["FetchedRecords"] == 5


# ---------------------------------------------------------------------------- Criteria


def set_duty(sim: AtHocSimulator, values: dict[int, str]) -> None:
    for i, value in values.items():
        sim.set_attribute(login_of(i), "On-Duty-DTG", value)


def test_criteria_eq_or(api: Api) -> None:
    criteria = f"LOGIN_ID eq '{login_of(3)}' or LOGIN_ID eq '{login_of(7).upper()}'"
    assert api.logins(Criteria=criteria) == [login_of(3), login_of(7)]
    body = api.search(Criteria=f"LOGIN_ID eq '{login_of(3)}'", Fields="LOGIN_ID").json()
    assert body["TotalUsers"] == 1 and body["FetchedRecords"] == 1
    assert api.logins(Criteria="Collar-Number ne '00001' and Collar-Number lt '00004'") == [
        login_of(2),
        login_of(3),
    ]


def test_criteria_pr_and_lt_on_date_times(simulator: AtHocSimulator, api: Api) -> None:
    set_duty(
        simulator,
        {
            1: "17/06/2025 08:00:00",
            2: "18/06/2025 13:59:59",
            3: "18/06/2025 14:00:00",
            4: "19/06/2025 09:00:00",
            5: "not a date",
            6: "   ",
        },
    )
    stale = "On-Duty-DTG pr and On-Duty-DTG lt '18/06/2025 14:00:00'"
    assert api.logins(Criteria=stale) == [login_of(1), login_of(2)]
    assert api.logins(Criteria="On-Duty-DTG pr") == [login_of(i) for i in range(1, 6)]
    assert api.logins(Criteria="On-Duty-DTG ge '18/06/2025 14:00:00'") == [
        login_of(3),
        login_of(4),
    ]
    assert api.logins(Criteria="On-Duty-DTG le '18/06/2025 14:00:00'") == [
        login_of(1),
        login_of(2),
        login_of(3),
    ]


def test_criteria_parentheses_change_grouping(simulator: AtHocSimulator, api: Api) -> None:
    set_duty(simulator, {1: "01/01/2025 00:00:00"})
    a, b = login_of(1), login_of(2)
    without = f"LOGIN_ID eq '{b}' or LOGIN_ID eq '{a}' and On-Duty-DTG pr"
    grouped = f"(LOGIN_ID eq '{b}' or LOGIN_ID eq '{a}') and On-Duty-DTG pr"
    assert api.logins(Criteria=without) == [a, b]  # and binds tighter
    assert api.logins(Criteria=grouped) == [a]


def test_criteria_dates_versus_text(simulator: AtHocSimulator, api: Api) -> None:
    # As dates, 02/01/2025 (2 January 2025) is AFTER 10/12/2024; as text it sorts before.
    set_duty(simulator, {1: "02/01/2025 09:00:00", 2: "10/12/2024 09:00:00"})
    query = "On-Duty-DTG lt '05/01/2025 00:00:00'"
    assert api.logins(Criteria=query) == [login_of(1), login_of(2)]
    query = "On-Duty-DTG lt '01/01/2025 00:00:00'"
    assert api.logins(Criteria=query) == [login_of(2)]
    simulator.criteria_lt_as_text = True
    # Text: "02/01/2025..." < "01/01/2025..." is false, "10/12/2024..." < "01/..." is false.
    assert api.logins(Criteria=query) == []
    assert api.logins(Criteria="On-Duty-DTG lt '03/01/2020 00:00:00'") == [login_of(1)]


def test_criteria_untrimmed_dates_refuse_stray_spaces(simulator: AtHocSimulator, api: Api) -> None:
    set_duty(simulator, {1: "17/06/2025 08:00:00 ", 2: "17/06/2025 08:00:00"})
    query = "On-Duty-DTG pr and On-Duty-DTG lt '18/06/2025 00:00:00'"
    assert api.logins(Criteria=query) == [login_of(1), login_of(2)]
    simulator.criteria_untrimmed_dates = True
    assert api.logins(Criteria=query) == [login_of(2)]  # a strictly typed server: not a date
    assert api.logins(Criteria="On-Duty-DTG pr") == [login_of(1), login_of(2)]


@pytest.mark.parametrize(
    "criteria",
    [
        "LOGIN_ID eq",
        "LOGIN_ID eq 'unterminated",
        "LOGIN_ID equals 'x'",
        "(LOGIN_ID pr",
        "LOGIN_ID pr or",
        "LOGIN_ID eq x",
        "On-Duty-DTG lt '2025-06-18'",  # not in the organization's date format
    ],
)
def test_bad_criteria_is_a_400(api: Api, criteria: str) -> None:
    response = api.search(Criteria=criteria)
    assert response.status_code == 400
    assert "Criteria" in response.json()["Message"]


def test_criteria_parser() -> None:
    tree = parse_criteria("A eq 'x' or B-c.d pr and (C lt 'it''s' OR d GE '2')")
    assert tree == Or(
        (
            Comparison("A", "eq", "x"),
            And(
                (
                    Comparison("B-c.d", "pr"),
                    Or((Comparison("C", "lt", "it's"), Comparison("d", "ge", "2"))),
                )
            ),
        )
    )
    with pytest.raises(CriteriaError, match="position 9"):
        parse_criteria("A eq 'x' B pr")
    with pytest.raises(CriteriaError, match="empty"):
        parse_criteria("   ")
    assert isinstance(CriteriaError("x"), ValueError)


def test_criteria_semantics() -> None:
    user = {"LOGIN_ID": "Anna@X", "On-Duty-DTG": "17/06/2025 08:00:00", "Blank": ""}
    assert Criteria("login_id eq 'anna@x'").matches(user)  # names and values: any case
    assert Criteria("Missing ne 'x'").matches(user)
    assert Criteria("Missing eq ''").matches(user)
    assert not Criteria("Blank pr").matches(user)
    assert not Criteria("Blank lt 'zzz'").matches(user)  # blank never orders
    dated = Criteria("On-Duty-DTG gt '16/06/2025 23:59:59'", datetime_attributes=["On-Duty-DTG"])
    assert dated.matches(user)
    as_text = Criteria("On-Duty-DTG gt '16/06/2025 23:59:59'")  # not declared a date-time
    assert as_text.matches(user)
    iso = Criteria(
        "On-Duty-DTG lt '2025-06-17 09:00'",
        datetime_attributes=["On-Duty-DTG"],
        datetime_format="%Y-%m-%d %H:%M",
    )
    assert not iso.matches(user)  # the user's value does not parse in that format
    with pytest.raises(CriteriaError):
        Criteria("On-Duty-DTG lt 'soon'", datetime_attributes=["on-duty-dtg"])


@given(st.text(max_size=30))
def test_criteria_quoting_round_trips(value: str) -> None:
    quoted = "'" + value.replace("'", "''") + "'"
    assert parse_criteria(f"X eq {quoted}") == Comparison("X", "eq", value)
    assert Criteria(f"X eq {quoted}").matches({"X": value})


# ---------------------------------------------------------------------------- SyncByCommonNames


def test_sync_updates_only_the_keys_sent(simulator: AtHocSimulator, api: Api) -> None:
    simulator.set_attribute(login_of(2), "On-Duty-DTG", "01/01/2025 10:00:00")
    before = simulator.get_user(login_of(1))
    assert before is not None
    rows = [
        {"LOGIN_ID": login_of(1), "On-Duty-DTG": "17/06/2024 14:30:00"},
        {"LOGIN_ID": login_of(2), "On-Duty-DTG": ""},
    ]
    response = api.sync(rows)
    assert response.status_code == 200
    result = response.json()
    assert [r["LOGIN_ID"] for r in result] == [login_of(1), login_of(2)]
    for sent, got in zip(rows, result):
        assert got[":SyncStatus"] == "OK"
        assert got[":SyncDetails"] == "Updated"
        assert isinstance(got["USER_ID"], int)
        assert got["On-Duty-DTG"] == sent["On-Duty-DTG"]
    assert simulator.get_user(login_of(1)) == {**before, "On-Duty-DTG": "17/06/2024 14:30:00"}
    user2 = simulator.get_user(login_of(2))
    assert user2 is not None and user2["On-Duty-DTG"] == ""
    assert user2["FIRSTNAME"] == make_users(2)[1]["FIRSTNAME"]
    (entry,) = simulator.requests_to("SyncByCommonNames")
    assert entry.json_body == rows
    assert entry.query == {"syncExistingUsersOnly": "true"}


def test_sync_unknown_user_is_a_row_error(simulator: AtHocSimulator, api: Api) -> None:
    rows = [
        {"LOGIN_ID": "gone@force.example", "On-Duty-DTG": ""},
        {"LOGIN_ID": login_of(5), "On-Duty-DTG": "17/06/2024 14:30:00"},
        {"On-Duty-DTG": "no login"},
    ]
    result = api.sync(rows).json()
    assert result[0] == {
        "LOGIN_ID": "gone@force.example",
        "On-Duty-DTG": "",
        ":SyncStatus": "Error",
        ":SyncDetails": "User: gone@force.example does not exists in the Organization",
        "USER_ID": None,
    }
    assert result[1][":SyncStatus"] == "OK"
    assert result[2][":SyncStatus"] == "Error" and result[2]["USER_ID"] is None
    assert "gone@force.example" not in simulator.users
    assert len(simulator.users) == 50


@pytest.mark.parametrize("flag", [None, "false"])
def test_sync_creates_users_without_existing_only(simulator: AtHocSimulator, api: Api, flag: Optional[str]) -> None:
    result = api.sync([{"LOGIN_ID": "new@force.example", "On-Duty-DTG": "x"}], flag).json()
    assert result[0][":SyncStatus"] == "OK"
    assert result[0][":SyncDetails"] == "Created"
    assert simulator.get_user("new@force.example") == {
        "LOGIN_ID": "new@force.example",
        "On-Duty-DTG": "x",
    }


def test_sync_status_del_deletes_the_user(simulator: AtHocSimulator, api: Api) -> None:
    result = api.sync([{"LOGIN_ID": login_of(9), "STATUS": "DEL"}]).json()
    assert result[0][":SyncStatus"] == "OK"
    assert result[0][":SyncDetails"] == "Deleted"
    assert simulator.get_user(login_of(9)) is None
    assert api.search(Limit=100).json()["TotalUsers"] == 49


@pytest.mark.parametrize("body", [{"LOGIN_ID": "x"}, ["not an object"], "text"])
def test_sync_needs_a_json_array_of_objects(api: Api, body: Any) -> None:
    assert api.sync(body).status_code == 400


def test_sync_rejects_invalid_json(simulator: AtHocSimulator, api: Api) -> None:
    response = api.post(
        SYNC_PATH + "?syncExistingUsersOnly=true",
        data=b"[{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_sync_forced_row_errors_and_missing_rows(simulator: AtHocSimulator, api: Api) -> None:
    simulator.row_errors[login_of(1)] = "Database timeout"
    simulator.row_errors[login_of(2)] = "Some attributes failed"
    simulator.row_status[login_of(2)] = "Partial"
    simulator.drop_response_rows = 1
    rows = [{"LOGIN_ID": login_of(i), "On-Duty-DTG": "17/06/2024 14:30:00"} for i in (1, 2, 3, 4)]
    result = api.sync(rows).json()
    assert [r["LOGIN_ID"] for r in result] == [login_of(1), login_of(2), login_of(3)]
    assert result[0][":SyncStatus"] == "Error"
    assert result[0][":SyncDetails"] == "Database timeout"
    assert result[1][":SyncStatus"] == "Partial"
    assert result[2][":SyncStatus"] == "OK"
    user1, user4 = simulator.get_user(login_of(1)), simulator.get_user(login_of(4))
    assert user1 is not None and user1["On-Duty-DTG"] == ""  # forced errors are not applied
    assert user4 is not None and user4["On-Duty-DTG"] == "17/06/2024 14:30:00"  # dropped: applied


def test_held_writes_are_applied_only_when_released(simulator: AtHocSimulator, api: Api) -> None:
    simulator.fail_next(drop=True, hold=True, path_contains="SyncByCommonNames")
    rows = [{"LOGIN_ID": login_of(1), "On-Duty-DTG": "17/06/2024 14:30:00"}, {"LOGIN_ID": "gone@x", "On-Duty-DTG": ""}]
    with pytest.raises(requests.ConnectionError):
        api.sync(rows)
    simulator.fail_next(status=200, delay=0.05, hold=True, path_contains="SyncByCommonNames")
    with pytest.raises(requests.ConnectionError):  # held pure delay: no answer after the delay
        api.sync([{"LOGIN_ID": login_of(2), "On-Duty-DTG": "x"}])
    assert api.search(Fields="LOGIN_ID").status_code == 200  # a listing never meets the hold fault
    assert simulator.held_writes == 2 and simulator.pending_faults == 0
    assert (simulator.get_user(login_of(1)) or {})["On-Duty-DTG"] == ""  # not applied yet
    assert api.sync([{"LOGIN_ID": login_of(1), "On-Duty-DTG": ""}]).json()[0][":SyncStatus"] == "OK"
    assert simulator.apply_late_writes() == 2  # the unknown user is refused, as it would be
    assert (simulator.get_user(login_of(1)) or {})["On-Duty-DTG"] == "17/06/2024 14:30:00"  # late: wins
    assert (simulator.get_user(login_of(2)) or {})["On-Duty-DTG"] == "x"
    assert simulator.held_writes == 0 and simulator.apply_late_writes() == 0


def test_after_page_changes_users_between_pages(simulator: AtHocSimulator, api: Api) -> None:
    simulator.after_page(0, lambda sim: sim.remove_user(login_of(3)))
    first = api.search(Fields="LOGIN_ID", Limit=10, Offset=0).json()
    second = api.search(Fields="LOGIN_ID", Limit=10, Offset=1).json()
    assert [u["LOGIN_ID"] for u in first["Users"]] == [login_of(i) for i in range(1, 11)]
    # The removal shifted the pages: user 11 moved to page 0 and is never listed.
    assert [u["LOGIN_ID"] for u in second["Users"]] == [login_of(i) for i in range(12, 22)]
    assert second["TotalUsers"] == 49
    simulator.after_page(0, lambda sim: sim.remove_user(login_of(5)), with_criteria=True)
    api.search(Fields="LOGIN_ID", Limit=10, Offset=0)  # no Criteria: the hook waits
    assert simulator.get_user(login_of(5)) is not None
    api.search(Fields="LOGIN_ID", Limit=10, Offset=0, Criteria="LOGIN_ID pr")
    assert simulator.get_user(login_of(5)) is None


def test_users_can_be_renamed_and_collars_moved(simulator: AtHocSimulator, api: Api) -> None:
    simulator.rename_user(login_of(1), "renamed@force.example")
    assert simulator.get_user(login_of(1)) is None
    assert (simulator.get_user("renamed@force.example") or {})["Collar-Number"] == "00001"
    with pytest.raises(ValueError):
        simulator.rename_user(login_of(2), "renamed@force.example")
    simulator.move_attribute("Collar-Number", login_of(2), login_of(3))
    assert (simulator.get_user(login_of(2)) or {})["Collar-Number"] == ""
    assert (simulator.get_user(login_of(3)) or {})["Collar-Number"] == "00002"
    rows = api.sync([{"LOGIN_ID": login_of(1), "On-Duty-DTG": ""}]).json()
    assert "does not exists" in rows[0][":SyncDetails"]
    ids = api.search(Fields="LOGIN_ID,USER_ID", Criteria="LOGIN_ID eq 'renamed@force.example'").json()
    assert ids["Users"][0]["USER_ID"] == 2060001  # the same account


def test_sync_row_limit(simulator: AtHocSimulator, api: Api) -> None:
    simulator.max_sync_rows = 2
    rows = [{"LOGIN_ID": login_of(i), "On-Duty-DTG": ""} for i in (1, 2, 3)]
    assert api.sync(rows).status_code == 413
    assert api.sync(rows[:2]).status_code == 200


# ---------------------------------------------------------------------------- faults


def test_fault_status_with_retry_after(simulator: AtHocSimulator, api: Api) -> None:
    simulator.fail_next(2, status=429, retry_after=3, path_contains="SyncByCommonNames")
    rows = [{"LOGIN_ID": login_of(1), "On-Duty-DTG": "x"}]
    assert api.search().status_code == 200  # does not match: not consumed
    first = api.sync(rows)
    assert first.status_code == 429 and first.headers["Retry-After"] == "3"
    assert "Message" in first.json()
    assert api.sync(rows).status_code == 429
    user = simulator.get_user(login_of(1))
    assert user is not None and user["On-Duty-DTG"] == ""  # faults apply nothing
    assert api.sync(rows).status_code == 200
    assert simulator.pending_faults == 0
    simulator.fail_next(status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    failed = api.search()
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert api.search().status_code == 200
    assert [e.status for e in simulator.journal][-6:] == [200, 429, 429, 200, 503, 200]


def test_fault_on_the_token_endpoint(simulator: AtHocSimulator, anon: Api) -> None:
    simulator.fail_next(status=502, body="<html>Bad gateway</html>", content_type="text/html")
    response = anon.token()
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    assert response.text == "<html>Bad gateway</html>"
    assert simulator.tokens_issued == 0
    assert anon.token().status_code == 200


def test_fault_drop_closes_without_answer(simulator: AtHocSimulator, api: Api) -> None:
    simulator.fail_next(drop=True)
    with pytest.raises(requests.ConnectionError):
        api.search()
    assert simulator.journal[-1].status == 0
    assert api.search().status_code == 200


def test_fault_delay_causes_client_timeout(simulator: AtHocSimulator, api: Api) -> None:
    simulator.fail_next(status=200, delay=1.0)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        api.search(timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert api.search().status_code == 200
    simulator.fail_next(status=200, delay=0.3)  # a pure delay: then served normally
    started = time.monotonic()
    assert api.search(Limit=3).json()["FetchedRecords"] == 3
    assert time.monotonic() - started >= 0.3


def test_fault_200_with_a_wrong_body(simulator: AtHocSimulator, api: Api) -> None:
    simulator.fail_next(status=200, body="<html>maintenance</html>", content_type="text/html")
    response = api.search()
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    simulator.fail_next(status=200, body='{"Users": "nope"}')
    assert api.search().json() == {"Users": "nope"}
    assert api.search().json()["TotalUsers"] == 50


def test_latency_is_added(simulator: AtHocSimulator, api: Api) -> None:
    simulator.latency = 0.25
    started = time.monotonic()
    assert api.search(Limit=1).status_code == 200
    assert time.monotonic() - started >= 0.25


# ---------------------------------------------------------------------------- HTTP, TLS, threads


def test_https_needs_the_ca(simulator: AtHocSimulator, tls_certs: TLSCerts) -> None:
    assert simulator.url.startswith("https://127.0.0.1:")
    assert not simulator.url.endswith("/")
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(simulator.url + TOKEN_PATH, data=token_form(), timeout=5)
    ok = requests.post(simulator.url + TOKEN_PATH, data=token_form(), timeout=5, verify=str(tls_certs.ca_pem))
    assert ok.status_code == 200
    localhost = simulator.url.replace("127.0.0.1", "localhost")
    ok = requests.post(localhost + TOKEN_PATH, data=token_form(), timeout=5, verify=str(tls_certs.ca_pem))
    assert ok.status_code == 200


def test_keep_alive_reuses_one_connection(simulator: AtHocSimulator, api: Api) -> None:
    before = simulator.connections_accepted
    for _ in range(5):
        assert api.search(Limit=2).status_code == 200
    assert api.sync([{"LOGIN_ID": login_of(1), "On-Duty-DTG": ""}]).status_code == 200
    assert simulator.connections_accepted == before  # the login's connection, reused


def test_bad_handshakes_are_quiet_and_harmless(
    simulator: AtHocSimulator, api: Api, capfd: pytest.CaptureFixture[str]
) -> None:
    port = int(simulator.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to the HTTPS port
        raw.settimeout(5)
        with contextlib.suppress(OSError):
            raw.recv(100)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05garbage")
    assert api.search().status_code == 200
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_tls_context_can_be_given(tls_certs: TLSCerts) -> None:
    # A server that only speaks TLS 1.1: modern clients refuse it, the server survives.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls_certs.certfile), str(tls_certs.keyfile))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: the point
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with AtHocSimulator(ssl_context=context) as sim:
        assert sim.url.startswith("https://")
        for _ in range(2):
            with pytest.raises(requests.exceptions.SSLError):
                requests.post(
                    sim.url + TOKEN_PATH,
                    data=token_form(),
                    timeout=5,
                    verify=str(tls_certs.ca_pem),
                )
        assert sim.running


def test_plain_http_and_restart_on_the_same_port() -> None:
    sim = AtHocSimulator(make_users(1))
    with pytest.raises(RuntimeError):
        _ = sim.url
    sim.start()
    url = sim.url
    assert url.startswith("http://127.0.0.1:")
    assert requests.post(url + TOKEN_PATH, data=token_form(), timeout=5).status_code == 200
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(requests.ConnectionError):
        requests.post(url + TOKEN_PATH, data=token_form(), timeout=5)
    sim.stop()  # idempotent
    with sim:
        assert sim.url == url
        assert requests.post(url + TOKEN_PATH, data=token_form(), timeout=5).status_code == 200
    assert sim.tokens_issued == 2


def test_stop_ends_parked_and_idle_connections_promptly() -> None:
    sim = AtHocSimulator(make_users(1))
    sim.start()
    session = requests.Session()
    assert session.post(sim.url + TOKEN_PATH, data=token_form(), timeout=5).status_code == 200
    sim.fail_next(status=200, delay=30)  # a request parked in the server
    parked: queue.Queue[Union[BaseException, int]] = queue.Queue()

    def call() -> None:
        try:
            parked.put(requests.get(sim.url + "/x", timeout=20).status_code)
        except requests.RequestException as exc:
            parked.put(exc)

    worker = threading.Thread(target=call)
    worker.start()
    while sim.pending_faults:
        time.sleep(0.01)
    started = time.monotonic()
    sim.stop()
    worker.join(10)
    assert time.monotonic() - started < 3
    assert not worker.is_alive()
    assert isinstance(parked.get_nowait(), requests.ConnectionError)  # no late answer
    session.close()


def test_concurrent_requests_are_all_journaled(simulator: AtHocSimulator, api: Api) -> None:
    token = api.session.headers["Authorization"]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = token
            try:
                for _ in range(5):
                    url = simulator.url + SYNC_PATH + "?syncExistingUsersOnly=true"
                    row = {"LOGIN_ID": login_of(n), "On-Duty-DTG": f"{n}"}
                    response = session.post(url, json=[row], timeout=10, verify=api.verify)
                    assert response.status_code == 200
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    simulator.clear_journal()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(simulator.journal) == 40
    assert all(e.status == 200 for e in simulator.journal)
    for n in range(1, 9):
        user = simulator.get_user(login_of(n))
        assert user is not None and user["On-Duty-DTG"] == str(n)


# ---------------------------------------------------------------------------- users


def test_make_users() -> None:
    users = make_users(3, start=99, domain="x.test")
    assert [u["LOGIN_ID"] for u in users] == [
        "user00099@x.test",
        "user00100@x.test",
        "user00101@x.test",
    ]
    assert [u["Collar-Number"] for u in users] == ["00099", "00100", "00101"]
    assert all(u["On-Duty-DTG"] == "" and u["FIRSTNAME"] and u["LASTNAME"] for u in users)
    assert make_users(3, start=99, domain="x.test") == users
    assert "Collar-Number" not in make_users(1, with_collar=False)[0]
    with pytest.raises(ValueError):
        AtHocSimulator([{"FIRSTNAME": "no login"}])


# ---------------------------------------------------------------------------- generator

WHEN = datetime(2025, 6, 17, 13, 46, 15)


def read_rows(path: Path, encoding: str = "utf-8") -> list[list[str]]:
    with open(path, encoding=encoding, newline="") as handle:
        return list(csv.reader(handle))


def test_export_row_format() -> None:
    row = export_row("BON", "05990", WHEN)
    assert len(row) == 10
    assert row[:6] == ["BON", "05990", "PAY05990", "20250617", "134615", "20250617134615"]
    assert 0 <= int(row[6]) <= 5
    for value in row[7:]:
        float(value)
    assert export_row("BOF", "1", WHEN, payroll_id="X")[2] == "X"
    assert export_row("BON", "05990", WHEN) == row


def test_write_bobo_file_names_and_formats(tmp_path: Path) -> None:
    rows = [export_row("BON", "00001", WHEN), export_row("BOF", "00002", WHEN)]
    first = write_bobo_file(tmp_path, rows, WHEN)
    assert first.name == "BOBO_20250617_134615_output.csv"
    raw = first.read_bytes()
    assert raw.startswith(b"BON,00001,") and raw.count(b"\r\n") == 2
    assert read_rows(first) == rows
    second = write_bobo_file(tmp_path, rows, WHEN, header=True, crlf=False)
    assert second.name == "BOBO_20250617_134616_output.csv"  # the next free second
    assert b"\r\n" not in second.read_bytes()
    assert read_rows(second) == [EXPORT_HEADER, *rows]
    bom = write_bobo_file(tmp_path, rows, WHEN, bom=True, name="bom.csv")
    assert bom.read_bytes().startswith(b"\xef\xbb\xbfBON,")
    with pytest.raises(FileExistsError):
        write_bobo_file(tmp_path, rows, WHEN, name="bom.csv")
    simple = write_bobo_file(tmp_path, rows, WHEN, simple=True, name="simple.csv")
    assert read_rows(simple) == [
        ["Employee_ID", "Status", "Timestamp"],
        ["00001", "On Duty", "2025-06-17 13:46:15"],
        ["00002", "Off Duty", "2025-06-17 13:46:15"],
    ]
    accented = write_bobo_file(tmp_path, [["BON", "00003", "Zoë Brontë"]], WHEN, encoding="cp1252", name="w.csv")
    assert "Zoë".encode("cp1252") in accented.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [first.name, second.name, "bom.csv", "simple.csv", "w.csv"]
    )  # no temporary files left behind


def test_generate_bobo_files_is_realistic_and_deterministic(tmp_path: Path) -> None:
    ids = [f"{i:05d}" for i in range(1, 21)]
    paths = generate_bobo_files(tmp_path / "a", ids, files=6, start=WHEN, seed=7)
    again = generate_bobo_files(tmp_path / "b", ids, files=6, start=WHEN, seed=7)
    other = generate_bobo_files(tmp_path / "c", ids, files=6, start=WHEN, seed=8)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    assert [p.read_bytes() for p in paths] != [p.read_bytes() for p in other]
    assert [p.name for p in paths] == [f"BOBO_{WHEN + timedelta(minutes=i):%Y%m%d_%H%M%S}_output.csv" for i in range(6)]
    times: list[str] = []
    for path in paths:
        rows = read_rows(path)
        assert 5 <= len(rows) <= 25
        for row in rows:
            assert len(row) == 10 and row[0] in ("BON", "BOF") and row[1] in ids
            assert row[5] == row[3] + row[4]
            times.append(row[5])
    assert times == sorted(times)
    stamps = [datetime.strptime(t, "%Y%m%d%H%M%S") for t in times]
    assert stamps[0] > WHEN - timedelta(minutes=1) and stamps[-1] <= WHEN + timedelta(minutes=5)
    with pytest.raises(ValueError):
        generate_bobo_files(tmp_path, [], files=1, start=WHEN)


# ---------------------------------------------------------------------------- command line


def run_cli(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bobosync.simulator", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def test_cli_generate(tmp_path: Path) -> None:
    out = tmp_path / "crown"
    result = run_cli(
        ["generate", str(out), "--files", "3", "--users", "12", "--seed", "5", "--start", "2025-06-17T13:46:00"]
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "BOBO_20250617_134600_output.csv",
        "BOBO_20250617_134700_output.csv",
        "BOBO_20250617_134800_output.csv",
    ]
    ids = {row[1] for name in names for row in read_rows(out / name)}
    assert ids <= {f"{i:05d}" for i in range(1, 13)}
    assert "wrote 3" in result.stderr
    assert run_cli(["generate", str(out)]).returncode == 2  # --files is required


def test_cli_serve_runs_until_terminated(tls_certs: TLSCerts) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bobosync.simulator",
            "--port",
            "0",
            "--users",
            "7",
            "--certfile",
            str(tls_certs.certfile),
            "--keyfile",
            str(tls_certs.keyfile),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            found = re.search(r"listening on (https://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url is not None, "the simulator never logged its URL"
        token = requests.post(url + TOKEN_PATH, data=token_form(), timeout=5, verify=str(tls_certs.ca_pem))
        assert token.status_code == 200
        headers = {"Authorization": "Bearer " + token.json()["access_token"]}
        users = requests.get(url + SEARCH_PATH, headers=headers, timeout=5, verify=str(tls_certs.ca_pem))
        assert users.json()["TotalUsers"] == 7
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert f"ATHOC_SERVER_URL={url}" in stdout
    for key, value in (
        ("CLIENT_ID", "client_id"),
        ("CLIENT_SECRET", "client_secret"),
        ("APIUSER", "username"),
        ("PASSWORD", "password"),
        ("ORG_CODE", "org_code"),
    ):
        assert f"{key}={SIM_CREDENTIALS[value]}" in stdout
