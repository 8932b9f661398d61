"""bobosync.client.AtHocClient (with bobosync.auth.TokenAuth) against the simulator over HTTPS."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import requests.adapters

from bobosync.client import AtHocClient, UpdateOutcome, UpdateResult
from bobosync.errors import (
    AtHocAuthError,
    AtHocError,
    AtHocHTTPError,
    AtHocResponseError,
    AtHocTransportError,
    IncompleteListing,
)
from bobosync.settings import Secret, Settings
from bobosync.simulator import SIM_CREDENTIALS, AtHocSimulator, make_users

FIELD = "On-Duty-DTG"
FMT = "%d/%m/%Y %H:%M:%S"


@pytest.fixture
def client(sim_settings: Settings) -> Iterator[AtHocClient]:
    with AtHocClient(sim_settings) as c:
        yield c


@pytest.fixture
def big_sim(tls_certs: object) -> Iterator[AtHocSimulator]:
    sim = AtHocSimulator(
        make_users(2500),
        certfile=tls_certs.certfile,  # type: ignore[attr-defined]
        keyfile=tls_certs.keyfile,  # type: ignore[attr-defined]
    )
    with sim:
        yield sim


@pytest.fixture
def big_client(big_sim: AtHocSimulator, sim_settings: Settings) -> Iterator[AtHocClient]:
    with AtHocClient(replace(sim_settings, athoc_server_url=big_sim.url)) as c:
        yield c


def uid(i: int) -> str:
    return f"user{i:05d}@force.example"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- token


def test_connect_fetches_token_with_documented_form(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    with AtHocClient(sim_settings) as c:
        assert c.request_count == 1
    (entry,) = simulator.journal
    assert entry.method == "POST" and entry.path == "/AuthServices/Auth/connect/token"
    assert entry.status == 200 and entry.auth_ok
    assert entry.form == {
        "grant_type": "password",
        "client_id": SIM_CREDENTIALS["client_id"],
        "client_secret": "***",  # the simulator redacts what it journals
        "username": SIM_CREDENTIALS["username"],
        "password": "***",
        "acr_values": f"tenant:{SIM_CREDENTIALS['org_code']}",
        "scope": "athoc.iws.web.api",
    }
    assert simulator.tokens_issued == 1


def test_settings_none_loads_settings(
    sim_env: dict[str, str],
    simulator: AtHocSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOBO_ENV_FILE", str(tmp_path / ".env"))
    with AtHocClient() as c:  # the "connection test"
        assert c.settings.athoc_server_url == simulator.url
    assert simulator.tokens_issued == 1


def test_authenticate_false_sends_nothing(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    with AtHocClient(sim_settings, authenticate=False) as c:
        assert c.request_count == 0
        assert simulator.journal == []
        assert len(c.get_all_users_with_attributes()) == 50  # the token comes on first use
        assert simulator.tokens_issued == 1


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"password": Secret("wrong-password-123")}, "invalid_grant"),
        ({"client_secret": Secret("wrong-secret-456")}, "invalid_client"),
        ({"org_code": "OTHERORG"}, "tenant"),
    ],
)
def test_bad_credentials_raise_auth_error_without_secrets(
    change: dict[str, object], words: str, sim_settings: Settings, simulator: AtHocSimulator
) -> None:
    settings = replace(sim_settings, **change)  # type: ignore[arg-type]
    with pytest.raises(AtHocAuthError) as info:
        AtHocClient(settings)
    text = str(info.value)
    assert words in text
    for secret in (
        "wrong-password-123",
        "wrong-secret-456",
        SIM_CREDENTIALS["password"],
        SIM_CREDENTIALS["client_secret"],
    ):
        assert secret not in text
        assert secret not in repr(info.value.args)
    assert len(simulator.requests_to("connect/token")) == 1  # 400/401: never retried


def test_token_response_without_access_token(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, 200, body='{"token_type": "Bearer", "expires_in": 3600}', path_contains="connect/token")
    with pytest.raises(AtHocAuthError) as info:
        AtHocClient(sim_settings)
    assert "access_token" in str(info.value)


def test_token_response_not_json(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    simulator.fail_next(
        1, 200, body="access_token=abcdef&expires_in=3600", content_type="text/plain", path_contains="connect/token"
    )
    with pytest.raises(AtHocResponseError) as info:
        AtHocClient(sim_settings)
    assert "abcdef" not in str(info.value)  # the token body is never quoted


def test_token_endpoint_transient_failure_is_retried(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    simulator.fail_next(2, 503, path_contains="connect/token")
    with AtHocClient(sim_settings) as c:
        assert c.request_count == 3
    assert simulator.tokens_issued == 1


def test_token_renewed_shortly_before_expiry(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    clock = FakeClock()
    with AtHocClient(sim_settings, authenticate=False) as c:
        c.transport.auth.clock = clock
        c.authenticate()  # expires_in 3600: renewal margin max(30, 360) = 360 s
        c.get_all_users_with_attributes()
        clock.now += 3600 - 400  # 400 s left: still good
        c.get_all_users_with_attributes()
        assert simulator.tokens_issued == 1
        clock.now += 50  # 350 s left: renewed before use
        c.get_all_users_with_attributes()
        assert simulator.tokens_issued == 2
        c.get_all_users_with_attributes()
        assert simulator.tokens_issued == 2
    assert all(e.auth_ok for e in simulator.journal)


def test_short_lived_tokens_renewed_using_minimum_margin(tls_certs: object, sim_settings: Settings) -> None:
    sim = AtHocSimulator(
        make_users(5),
        certfile=tls_certs.certfile,  # type: ignore[attr-defined]
        keyfile=tls_certs.keyfile,  # type: ignore[attr-defined]
        token_lifetime=100,
    )
    clock = FakeClock()
    with sim, AtHocClient(replace(sim_settings, athoc_server_url=sim.url), authenticate=False) as c:
        c.transport.auth.clock = clock
        c.authenticate()
        clock.now += 69  # 31 s left > 30 s minimum margin
        c.get_all_users_with_attributes()
        assert sim.tokens_issued == 1
        clock.now += 2  # 29 s left
        c.get_all_users_with_attributes()
        assert sim.tokens_issued == 2


def test_invalidate_forces_new_token(client: AtHocClient, simulator: AtHocSimulator) -> None:
    client.transport.auth.invalidate()
    client.get_all_users_with_attributes()
    assert simulator.tokens_issued == 2


def test_401_mid_session_gets_one_new_token_and_retries_once(
    client: AtHocClient, simulator: AtHocSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.expire_tokens()
    with caplog.at_level(logging.INFO, logger="bobosync"):
        users = client.get_all_users_with_attributes()
    assert len(users) == 50
    assert simulator.tokens_issued == 2
    searches = simulator.requests_to("search/basic")
    assert [e.status for e in searches] == [401, 200]
    assert [e.auth_ok for e in searches] == [False, True]
    assert client.request_count == 4  # token, 401, token, re-sent request
    assert len(simulator.journal) == 4
    assert any("401" in r.getMessage() for r in caplog.records)


def test_401_on_post_resends_the_same_body(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.expire_tokens()
    results = client.batch_update_duty_status({uid(1): "18/06/2025 08:00:00"})
    assert results[uid(1)].outcome is UpdateOutcome.APPLIED
    syncs = simulator.requests_to("SyncByCommonNames")
    assert [e.status for e in syncs] == [401, 200]
    assert syncs[0].json_body == syncs[1].json_body == [{"LOGIN_ID": uid(1), FIELD: "18/06/2025 08:00:00"}]
    assert simulator.users[uid(1)][FIELD] == "18/06/2025 08:00:00"


def test_persistent_401_surfaces_as_http_error(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.fail_next(5, 401, path_contains="search/basic")
    with pytest.raises(AtHocHTTPError) as info:
        client.get_all_users_with_attributes()
    assert info.value.status == 401 and not info.value.retryable
    assert len(simulator.requests_to("search/basic")) == 2  # the call and ONE re-send
    assert simulator.tokens_issued == 2
    assert simulator.pending_faults == 3


def test_credentials_revoked_mid_session_raise_auth_error(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.credentials["password"] = "changed-by-admin"
    simulator.expire_tokens()
    with pytest.raises(AtHocAuthError):
        client.get_all_users_with_attributes()
    with pytest.raises(AtHocAuthError):
        client.batch_update_duty_status({uid(1): ""})


def test_secrets_never_logged_nor_in_errors(
    sim_settings: Settings, simulator: AtHocSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    tokens: list[str] = []
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        with AtHocClient(sim_settings) as c:
            tokens.append(str(c.transport.auth._token))
            simulator.expire_tokens()
            c.get_all_users_with_attributes()
            tokens.append(str(c.transport.auth._token))
            c.batch_update_duty_status({uid(1): "", "nobody@x": ""})
            simulator.fail_next(1, 503, path_contains="search")
            c.query_users_with_old_duty_status(now=datetime(2025, 6, 18))
            simulator.fail_next(5, 401, path_contains="search")
            with pytest.raises(AtHocError) as info:
                c.get_all_users_with_attributes()
            errors.append(str(info.value))
            tokens.append(str(c.transport.auth._token))
            errors.append(repr(c.transport.auth))
        with pytest.raises(AtHocAuthError) as bad:
            AtHocClient(replace(sim_settings, password=Secret("Wr0ng-Pa55")))
        errors.append(str(bad.value))
    assert len(set(tokens)) == 3 and all(len(t) > 20 for t in tokens)
    text = "\n".join([r.getMessage() for r in caplog.records] + errors)
    assert "GET /api/v2/orgs/SIMORG/users/search/basic -> 200" in text  # DEBUG was captured
    for secret in [SIM_CREDENTIALS["password"], SIM_CREDENTIALS["client_secret"], "Wr0ng-Pa55", *tokens]:
        assert secret not in text
    assert "Bearer " not in text


# --------------------------------------------------------------------------- listing users


def test_listing_returns_requested_fields_as_text(client: AtHocClient, simulator: AtHocSimulator) -> None:
    users = client.get_all_users_with_attributes()
    assert len(users) == 50
    first = next(u for u in users if u["LOGIN_ID"] == uid(1))
    assert first == {
        "LOGIN_ID": uid(1),
        "Collar-Number": "00001",
        "FIRSTNAME": simulator.users[uid(1)]["FIRSTNAME"],
        "LASTNAME": simulator.users[uid(1)]["LASTNAME"],
    }
    (search,) = simulator.requests_to("search/basic")
    assert search.query == {
        "Fields": "LOGIN_ID,Collar-Number,FIRSTNAME,LASTNAME",
        "Limit": "1000",
        "Offset": "0",
    }


def test_listing_missing_and_numeric_values_normalised(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.omit_empty_fields = True
    users = client.get_all_users_with_attributes(["LOGIN_ID", FIELD])
    assert all(u[FIELD] == "" for u in users)
    simulator.fail_next(
        1,
        200,
        path_contains="search/basic",
        body='{"Users": [{"LOGIN_ID": "a@x", "N": 5, "M": null}], "TotalUsers": 1}',
    )
    assert client.get_all_users_with_attributes(["N", "M"]) == [{"LOGIN_ID": "a@x", "N": "5", "M": ""}]


def test_paging_over_2500_users(big_client: AtHocClient, big_sim: AtHocSimulator) -> None:
    users = big_client.get_all_users_with_attributes()
    assert len(users) == 2500
    assert {u["LOGIN_ID"] for u in users} == set(big_sim.users)
    searches = big_sim.requests_to("search/basic")
    assert [e.query["Offset"] for e in searches] == ["0", "1", "2"]
    assert {e.query["Limit"] for e in searches} == {"1000"}


def test_paging_without_total_users_reads_until_empty_page(big_client: AtHocClient, big_sim: AtHocSimulator) -> None:
    big_sim.omit_total_users = True
    big_sim.max_limit = 300  # short pages are not the end
    users = big_client.get_all_users_with_attributes()
    assert len(users) == 2500
    offsets = [int(e.query["Offset"]) for e in big_sim.requests_to("search/basic")]
    assert offsets == list(range(10))  # 9 pages of up to 300, then the empty page


def test_server_capping_limit_with_total_users(big_client: AtHocClient, big_sim: AtHocSimulator) -> None:
    big_sim.max_limit = 700
    assert len(big_client.get_all_users_with_attributes()) == 2500
    assert len(big_sim.requests_to("search/basic")) == 4  # stops once TotalUsers seen


@pytest.mark.parametrize("omit_total", [False, True])
def test_server_ignoring_offset_raises_incomplete_listing(
    omit_total: bool, big_client: AtHocClient, big_sim: AtHocSimulator
) -> None:
    big_sim.ignore_offset = True
    big_sim.omit_total_users = omit_total
    with pytest.raises(IncompleteListing) as info:
        big_client.get_all_users_with_attributes()
    assert "Offset" in str(info.value)
    assert len(big_sim.requests_to("search/basic")) == 2


def test_empty_page_before_total_users_raises(big_client: AtHocClient, big_sim: AtHocSimulator) -> None:
    big_sim.fail_next(1, 200, body='{"Users": [], "TotalUsers": 2500}', path_contains="Offset=1")
    with pytest.raises(IncompleteListing) as info:
        big_client.get_all_users_with_attributes()
    assert "1000" in str(info.value) and "2500" in str(info.value)


def test_page_cap(big_client: AtHocClient, big_sim: AtHocSimulator) -> None:
    big_sim.omit_total_users = True
    big_client.max_pages = 2
    with pytest.raises(IncompleteListing):
        big_client.get_all_users_with_attributes()
    assert len(big_sim.requests_to("search/basic")) == 2


def test_duplicates_across_pages_are_deduplicated(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.fail_next(
        1,
        200,
        path_contains="Offset=0",
        body=('{"Users": [{"LOGIN_ID": "a@x"}, {"LOGIN_ID": "b@x"}, {"LOGIN_ID": "a@x"}], "TotalUsers": 3}'),
    )
    simulator.fail_next(
        1,
        200,
        path_contains="Offset=1",
        body=('{"Users": [{"LOGIN_ID": "b@x"}, {"LOGIN_ID": "c@x"}], "TotalUsers": 3}'),
    )
    users = client.get_all_users_with_attributes(["LOGIN_ID"])
    assert [u["LOGIN_ID"] for u in users] == ["a@x", "b@x", "c@x"]


@pytest.mark.parametrize(
    "body",
    [
        '[{"LOGIN_ID": "a"}]',
        '{"users": []}',
        '{"Users": {"a": 1}}',
        '{"Users": ["a@x"]}',
        '{"Users": [], "TotalUsers": "many"}',
    ],
)
def test_bad_listing_shape_is_response_error(body: str, client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, 200, body=body, path_contains="search/basic")
    with pytest.raises(AtHocResponseError):
        client.get_all_users_with_attributes()


def test_read_users_asks_by_name_in_short_requests(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.add_user({"LOGIN_ID": "o'brien@force.example", "Collar-Number": "77777"})
    wanted = [uid(i) for i in range(1, 41)] + ["o'brien@force.example", "gone@force.example", uid(3).upper()]
    simulator.clear_journal()
    found = client.read_users(wanted, ["LOGIN_ID", "Collar-Number", FIELD])
    assert set(found) == {uid(i) for i in range(1, 41)} | {"o'brien@force.example"}
    assert found["o'brien@force.example"] == {"LOGIN_ID": "o'brien@force.example", "Collar-Number": "77777", FIELD: ""}
    requests_sent = simulator.requests_to("search/basic")
    assert len(requests_sent) > 1  # split: one long Criteria would exceed the query-string limit
    for entry in requests_sent:
        assert len(urlencode(entry.query)) < 2048
        assert entry.query["Criteria"].startswith("LOGIN_ID eq '")
    assert sum(e.query["Criteria"].count(" eq ") for e in requests_sent) == 42  # each name once
    assert client.read_users([]) == {}


# --------------------------------------------------------------------------- batch update


def test_batch_update_outcomes(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.row_errors[uid(3)] = "Attribute value rejected"
    simulator.row_errors[uid(4)] = "Some attributes were not updated"
    simulator.row_status[uid(4)] = "Partial"
    simulator.row_errors[uid(5)] = "Attribute 'On-Duty-DTG' does not exist"
    updates = {
        uid(1): "18/06/2025 08:00:00",
        uid(2): "",
        "gone@force.example": "",
        uid(3): "18/06/2025 09:00:00",
        uid(4): "18/06/2025 10:00:00",
        uid(5): "",
    }
    simulator.users[uid(2)][FIELD] = "17/06/2025 08:00:00"
    results = client.batch_update_duty_status(updates)
    assert set(results) == set(updates)
    assert results[uid(1)] == UpdateResult(uid(1), UpdateOutcome.APPLIED, "Updated")
    assert results[uid(2)].outcome is UpdateOutcome.APPLIED
    gone = results["gone@force.example"]
    assert gone.outcome is UpdateOutcome.NOT_IN_ATHOC and "does not exists" in gone.detail
    assert results[uid(3)].outcome is UpdateOutcome.FAILED
    assert "Attribute value rejected" in results[uid(3)].detail
    assert results[uid(4)].outcome is UpdateOutcome.FAILED
    assert results[uid(4)].detail.startswith("Partial")
    assert results[uid(5)].outcome is UpdateOutcome.FAILED  # not "user not in organization"
    assert simulator.users[uid(1)][FIELD] == "18/06/2025 08:00:00"
    assert simulator.users[uid(2)][FIELD] == ""
    assert "gone@force.example" not in simulator.users  # never created
    (sync,) = simulator.requests_to("SyncByCommonNames")
    assert sync.query == {"syncExistingUsersOnly": "true"}
    assert sync.json_body == [{"LOGIN_ID": k, FIELD: v} for k, v in updates.items()]


def test_not_in_athoc_variants(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.row_errors[uid(1)] = "User: x DOES NOT EXIST in the organization"
    simulator.row_errors[uid(2)] = "user does not exists"
    results = client.batch_update_duty_status({uid(1): "", uid(2): ""})
    assert results[uid(1)].outcome is UpdateOutcome.NOT_IN_ATHOC
    assert results[uid(2)].outcome is UpdateOutcome.NOT_IN_ATHOC


def test_rows_missing_from_response_are_failed(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.drop_response_rows = 2
    results = client.batch_update_duty_status({uid(i): "" for i in range(1, 6)})
    assert [results[uid(i)].outcome for i in range(1, 6)] == [UpdateOutcome.APPLIED] * 3 + [UpdateOutcome.FAILED] * 2
    assert results[uid(5)].detail == "missing from AtHoc's response"


def test_response_rows_matched_by_login_id_case_insensitively(client: AtHocClient, simulator: AtHocSimulator) -> None:
    body = (
        '[{"LOGIN_ID": "B@X", ":SyncStatus": "OK", ":SyncDetails": "Updated"},'
        ' {"LOGIN_ID": "a@x", ":SyncStatus": "Error", ":SyncDetails": "boom"},'
        ' {"LOGIN_ID": "A@x", ":SyncStatus": "OK", ":SyncDetails": "Updated"},'
        ' "junk", {"no": "id"}]'
    )
    simulator.fail_next(1, 200, body=body, path_contains="SyncByCommonNames")
    results = client.batch_update_duty_status({"A@x": "", "b@x": "", "c@x": "", "a@x": ""})
    assert results["A@x"].outcome is UpdateOutcome.APPLIED  # exact match wins
    assert results["a@x"].outcome is UpdateOutcome.FAILED  # its own exact row: Error
    assert results["b@x"].outcome is UpdateOutcome.APPLIED  # case-insensitive match
    assert results["c@x"].detail == "missing from AtHoc's response"


@pytest.mark.parametrize("body", ['{"Result": "ok"}', "null", '"OK"'])
def test_response_not_a_list_fails_the_chunk(body: str, client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, 200, body=body, path_contains="SyncByCommonNames")
    results = client.batch_update_duty_status({uid(1): "", uid(2): ""})
    assert {r.outcome for r in results.values()} == {UpdateOutcome.FAILED}


@pytest.mark.parametrize(
    ("fault", "outcome", "suspect"),
    [
        ({"drop": True}, UpdateOutcome.UNANSWERED, True),  # sent, no answer
        ({"status": 200, "truncate": True}, UpdateOutcome.UNANSWERED, True),  # applied, answer cut
        ({"status": 503}, UpdateOutcome.UNANSWERED, True),  # AtHoc failed after receiving it
        ({"status": 500, "body": "<html>boom</html>", "content_type": "text/html"}, UpdateOutcome.UNANSWERED, True),
        ({"status": 200, "body": "<html>portal</html>", "content_type": "text/html"}, UpdateOutcome.UNANSWERED, True),
        ({"status": 429}, UpdateOutcome.UNANSWERED, False),  # throttled: not carried out
        ({"status": 403}, UpdateOutcome.UNANSWERED, False),  # refused outright
        ({"status": 400}, UpdateOutcome.FAILED, False),
    ],
)
def test_lost_answers_are_marked_maybe_applied(
    fault: dict[str, Any],
    outcome: UpdateOutcome,
    suspect: bool,
    sim_settings: Settings,
    simulator: AtHocSimulator,
) -> None:
    with AtHocClient(replace(sim_settings, max_users_per_request=1, http_retry_attempts=1)) as c:
        simulator.fail_next(1, path_contains="SyncByCommonNames", **fault)
        results = c.batch_update_duty_status({uid(1): "x", uid(2): "y"})
    assert results[uid(1)].outcome is outcome
    assert results[uid(1)].maybe_applied is suspect
    if outcome is UpdateOutcome.UNANSWERED:
        assert not results[uid(2)].maybe_applied  # a later chunk, never sent
        assert results[uid(2)].detail.startswith("not attempted")


def test_rows_missing_from_the_answer_may_have_been_applied(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.drop_response_rows = 1
    results = client.batch_update_duty_status({uid(1): "x", uid(2): "y"})
    assert [results[uid(1)].maybe_applied, results[uid(2)].maybe_applied] == [False, True]
    simulator.drop_response_rows = 0
    simulator.fail_next(1, 200, body='{"Result": "ok"}', path_contains="SyncByCommonNames")
    assert all(r.maybe_applied for r in client.batch_update_duty_status({uid(1): ""}).values())


def test_chunking_by_max_users_per_request(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    with AtHocClient(replace(sim_settings, max_users_per_request=10)) as c:
        updates = {uid(i): f"18/06/2025 08:{i:02d}:00" for i in range(1, 26)}
        results = c.batch_update_duty_status(updates)
    assert len(results) == 25
    assert all(r.outcome is UpdateOutcome.APPLIED for r in results.values())
    syncs = simulator.requests_to("SyncByCommonNames")
    assert [len(e.json_body) for e in syncs] == [10, 10, 5]
    for entry in syncs:
        assert entry.query == {"syncExistingUsersOnly": "true"}
        assert all(set(row) == {"LOGIN_ID", FIELD} for row in entry.json_body)
    assert [row["LOGIN_ID"] for e in syncs for row in e.json_body] == list(updates)


def test_empty_update_sends_nothing(client: AtHocClient, simulator: AtHocSimulator) -> None:
    assert client.batch_update_duty_status({}) == {}
    assert simulator.requests_to("SyncByCommonNames") == []


def test_unreachable_marks_remaining_chunks_not_attempted(
    sim_settings: Settings, simulator: AtHocSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    with AtHocClient(replace(sim_settings, max_users_per_request=2)) as c:
        simulator.fail_next(3, 503, path_contains="SyncByCommonNames")
        updates = {uid(i): "" for i in range(1, 8)}  # chunks of 2, 2, 2, 1
        with caplog.at_level(logging.WARNING, logger="bobosync"):
            results = c.batch_update_duty_status(updates)
    assert len(results) == 7 and all(r.outcome is UpdateOutcome.UNANSWERED for r in results.values())
    assert results[uid(1)].detail.startswith("request failed:")
    assert all(results[uid(i)].detail.startswith("not attempted:") for i in range(3, 8))
    assert len(simulator.requests_to("SyncByCommonNames")) == 3  # chunk 1, three tries
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_server_down_marks_everything_failed(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    with AtHocClient(replace(sim_settings, max_users_per_request=2)) as c:
        simulator.stop()
        results = c.batch_update_duty_status({uid(i): "" for i in range(1, 6)})
        assert c.request_count == 1 + 3
    assert {r.outcome for r in results.values()} == {UpdateOutcome.UNANSWERED}
    assert "not attempted" in results[uid(5)].detail


def test_non_retryable_chunk_error_fails_that_chunk_only(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    with AtHocClient(replace(sim_settings, max_users_per_request=2)) as c:
        simulator.fail_next(1, 400, path_contains="SyncByCommonNames")
        results = c.batch_update_duty_status({uid(i): "" for i in range(1, 6)})
    assert [results[uid(i)].outcome for i in range(1, 6)] == [UpdateOutcome.FAILED] * 2 + [UpdateOutcome.APPLIED] * 3
    assert "HTTP 400" in results[uid(1)].detail
    assert len(simulator.requests_to("SyncByCommonNames")) == 3


def test_transient_sync_failure_retried(client: AtHocClient, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, drop=True, path_contains="SyncByCommonNames")
    results = client.batch_update_duty_status({uid(1): "x"})
    assert results[uid(1)].outcome is UpdateOutcome.APPLIED


# --------------------------------------------------------------------------- stale duty status

NOW = datetime(2025, 7, 1, 14, 0, 0)  # cutoff (24 h): 30/06/2025 14:00:00


def _stale_fixture(sim: AtHocSimulator) -> None:
    values = {
        1: "30/06/2025 10:00:00",  # older: clear
        2: "15/06/2025 08:00:00",  # older: clear
        3: "01/07/2025 09:00:00",  # newer; as text "01/..." < "30/..."
        4: "2025-06-01 08:00",  # unparseable; as text "2..." < "3..."
        5: "30/06/2025 14:00:00",  # exactly the cutoff: not strictly older
        6: "30/06/2025 13:59:59",  # older by a second: clear
        7: "   ",  # blank
    }
    with sim.lock:
        for i, value in values.items():
            sim.users[uid(i)][FIELD] = value


@pytest.mark.parametrize("as_text", [True, False])
def test_stale_query_checks_every_value(
    as_text: bool,
    client: AtHocClient,
    simulator: AtHocSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _stale_fixture(simulator)
    simulator.criteria_lt_as_text = as_text
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        stale = client.query_users_with_old_duty_status(now=NOW)
    assert sorted(stale, key=lambda r: r["LOGIN_ID"]) == [
        {"LOGIN_ID": uid(1), FIELD: "30/06/2025 10:00:00"},
        {"LOGIN_ID": uid(2), FIELD: "15/06/2025 08:00:00"},
        {"LOGIN_ID": uid(6), FIELD: "30/06/2025 13:59:59"},
    ]
    (search,) = simulator.requests_to("search/basic")
    assert search.query["Criteria"] == f"{FIELD} pr and {FIELD} lt '30/06/2025 14:00:00'"
    assert search.query["Fields"] == f"LOGIN_ID,{FIELD}"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if as_text:  # the text-comparing server sent the newer and the unparseable values
        assert len(warned) == 1 and uid(4) in warned[0] and "2025-06-01 08:00" in warned[0]
        assert any("1 not older" in r.getMessage() for r in caplog.records)
    else:
        assert warned == []


def test_clear_old_duty_status(client: AtHocClient, simulator: AtHocSimulator) -> None:
    _stale_fixture(simulator)
    simulator.criteria_lt_as_text = True
    simulator.row_errors[uid(6)] = "temporary trouble"
    assert client.clear_old_duty_status(now=NOW) == 2
    values = {i: simulator.users[uid(i)][FIELD] for i in range(1, 8)}
    assert values == {
        1: "",
        2: "",
        3: "01/07/2025 09:00:00",
        4: "2025-06-01 08:00",
        5: "30/06/2025 14:00:00",
        6: "30/06/2025 13:59:59",  # its row failed
        7: "   ",
    }
    (sync,) = simulator.requests_to("SyncByCommonNames")
    assert sorted(r["LOGIN_ID"] for r in sync.json_body) == [uid(1), uid(2), uid(6)]
    assert all(r[FIELD] == "" for r in sync.json_body)


def test_clear_with_other_field_hours_and_format(sim_settings: Settings, tls_certs: object) -> None:
    sim = AtHocSimulator(
        make_users(5),
        certfile=tls_certs.certfile,  # type: ignore[attr-defined]
        keyfile=tls_certs.keyfile,  # type: ignore[attr-defined]
        datetime_format="%Y-%m-%d %H:%M",
        datetime_attributes=("Last-Seen",),
    )
    with sim:
        sim.users[uid(1)]["Last-Seen"] = "2025-07-01 01:59"
        sim.users[uid(2)]["Last-Seen"] = "2025-07-01 02:00"
        settings = replace(sim_settings, athoc_server_url=sim.url, athoc_datetime_format="%Y-%m-%d %H:%M")
        with AtHocClient(settings) as c:
            assert c.clear_old_duty_status(field="Last-Seen", hours=12, now=NOW) == 1
        (sync,) = sim.requests_to("SyncByCommonNames")
        assert sync.json_body == [{"LOGIN_ID": uid(1), "Last-Seen": ""}]
        assert sim.users[uid(1)]["Last-Seen"] == "" and sim.users[uid(2)]["Last-Seen"]


def test_nothing_stale_sends_no_update(client: AtHocClient, simulator: AtHocSimulator) -> None:
    assert client.clear_old_duty_status(now=NOW) == 0
    assert simulator.requests_to("SyncByCommonNames") == []


# --------------------------------------------------------------------------- TLS verification


def test_certificate_not_trusted_without_ssl_cert_path(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    with pytest.raises(AtHocTransportError) as info:
        AtHocClient(replace(sim_settings, ssl_cert_path=None))
    assert "certificate" in str(info.value).lower()
    assert "SSL_CERT_PATH" in str(info.value)
    assert simulator.journal == []


def test_disable_ssl_verify_works_and_warns_once(
    sim_settings: Settings, simulator: AtHocSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(sim_settings, ssl_cert_path=None, disable_ssl_verify=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING, logger="bobosync"), AtHocClient(settings) as c:
            assert len(c.get_all_users_with_attributes()) == 50
            c.batch_update_duty_status({uid(1): ""})
    disabled = [r for r in caplog.records if "SSL certificate verification is DISABLED" in r.getMessage()]
    assert len(disabled) == 1 and disabled[0].levelno == logging.WARNING
    assert disabled[0].name == "bobosync.client"
    assert [w for w in caught if "Unverified HTTPS" in str(w.message)] == []
    assert simulator.tokens_issued == 1


def test_given_session_is_used_and_left_open(sim_settings: Settings, simulator: AtHocSimulator) -> None:

    from bobosync.transport import build_session

    seen: list[int] = []

    def record(response: requests.Response, **kwargs: object) -> requests.Response:
        seen.append(response.status_code)
        return response

    session = build_session(sim_settings)
    session.hooks["response"].append(record)
    with AtHocClient(sim_settings, session=session) as c:
        c.get_all_users_with_attributes()
    assert seen == [200, 200]
    # not closed by the client: its connection pool is still there
    assert len(_pools(session.get_adapter(simulator.url))) == 1
    session.close()
    assert len(_pools(session.get_adapter(simulator.url))) == 0


def _pools(adapter: requests.adapters.BaseAdapter) -> Any:
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    return adapter.poolmanager.pools


def test_own_session_closed_on_close(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    c = AtHocClient(sim_settings)
    adapter = c.transport.session.get_adapter(simulator.url)
    assert len(_pools(adapter)) == 1
    c.close()
    assert len(_pools(adapter)) == 0


@pytest.mark.parametrize("status", [403, 404, 413])
def test_whole_request_refusal_is_unanswered_and_stops_later_chunks(
    status: int, sim_settings: Settings, simulator: AtHocSimulator
) -> None:
    with AtHocClient(replace(sim_settings, max_users_per_request=2)) as c:
        simulator.fail_next(1, status, path_contains="SyncByCommonNames")
        results = c.batch_update_duty_status({uid(i): "" for i in range(1, 6)})
    assert {r.outcome for r in results.values()} == {UpdateOutcome.UNANSWERED}
    assert len(simulator.requests_to("SyncByCommonNames")) == 1
