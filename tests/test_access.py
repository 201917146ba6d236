"""Who may rate, under which name (``harness.app.access`` over a real DuckDB file): invitations
bound to one rater, revocation that ends live sessions, goal tokens refused, and the owner's
pages."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness import panel
from harness.app import access
from harness.errors import HarnessError
from harness.goals import HumanSpec
from harness.store import Store
from tests.helpers import store_at_version, table_columns

ITEM = panel.PanelItem("it-1", "g", "run", "ex1", "lora", None, panel.POINTWISE, "tone")
PAIR = panel.PanelItem("it-2", "g", "run", "ex1", "lora", "zero-shot", panel.PAIRWISE, "tone")


def _goal(**human):
    return SimpleNamespace(goal="g", human=HumanSpec(rubrics=["tone"], **human))


def _invite(store: Store, name: str, goal: str = "g") -> str:
    token = panel.new_invitation_token()
    store.put_invitation(goal, panel.rater_name(name), panel.invitation_hash(token))
    return token


def _rows(store: Store, item: str = ITEM.item_id) -> dict[tuple[str, str], float]:
    return {(r["rater"], r["criterion"]): r["score"] for r in store.ratings("g") if r["item_id"] == item}


def test_the_store_keeps_a_hash_of_the_token_never_the_token(tmp_path):
    path = tmp_path / "s.duckdb"
    store = Store(path)
    token = _invite(store, "Alice")
    assert store.invitations("g")[0]["rater"] == "alice" and set(store.invitations("g")[0]) == {
        "rater", "created_at", "revoked_at"}
    row = store.query("SELECT * FROM invitations")[0]
    assert row["token_hash"] == panel.invitation_hash(token) and token not in str(row)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("s.duckdb")]
    assert files and all(token.encode() not in p.read_bytes() for p in files)


def test_m004_adds_the_invitations_table_to_an_older_store(tmp_path):
    from harness.store import SCHEMA_VERSION

    path = tmp_path / "old.duckdb"
    con = store_at_version(path, 3)
    con.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    cols = table_columns(store, "invitations")
    assert cols == ["token_hash", "goal", "rater", "created_at", "revoked_at"]


def test_bobs_invitation_rates_as_bob_whatever_name_the_session_claims(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    alice, bob = _invite(store, "alice"), _invite(store, "bob")
    goal = _goal()
    a = access.sign_in(store, goal, token=alice, name="whoever")
    access.save_rating(store, goal, a, ITEM, "formal", 5)
    b = access.sign_in(store, goal, token=bob, name="alice")  # the name is not the rater's to choose
    assert (b.name, b.via) == ("bob", access.INVITATION)
    for claimed in ("alice", "ALICE", "Alice\u200b", "A1ice", "\u202ealice"):
        forged = access.Rater("g", claimed, access.INVITATION, b.secret)  # a tampered session
        assert access.save_rating(store, goal, forged, ITEM, "formal", 1) == "bob"
    assert _rows(store) == {("alice", "formal"): 5.0, ("bob", "formal"): 1.0}
    # With invitations a typed name lets nobody in.
    for creds in ({"name": "alice"}, {"name": "alice", "token": "s3cret"}, {"token": "made-up"}):
        with pytest.raises(HarnessError, match="unknown or was revoked"):
            access.sign_in(store, _goal(), **creds)
    with pytest.raises(HarnessError):
        access.save_rating(store, goal, access.Rater("g", "alice", access.OPEN), ITEM, "formal", 1)
    assert _rows(store) == {("alice", "formal"): 5.0, ("bob", "formal"): 1.0}


def test_revoking_ends_a_live_session_at_the_next_save(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    token = _invite(store, "Bob")
    goal = _goal()
    bob = access.sign_in(store, goal, token=token)
    access.save_rating(store, goal, bob, ITEM, "formal", 3)
    access.save_rating(store, goal, bob, PAIR, "formal", "A")
    assert access.still_valid(store, goal, bob) is None
    assert store.revoke_invitations("g", "bob") == 1 and store.revoke_invitations("g", "bob") == 0
    assert "revoked" in access.still_valid(store, goal, bob)
    with pytest.raises(HarnessError, match="revoked"):
        access.save_rating(store, goal, bob, ITEM, "formal", 5)
    with pytest.raises(HarnessError, match="revoked"):
        store.put_invited_rating("g", bob.secret, "it-9", "formal", score=1.0)
    with pytest.raises(HarnessError):
        access.sign_in(store, goal, token=token)
    assert _rows(store) == {("bob", "formal"): 3.0} and len(store.ratings("g")) == 2
    assert [r["choice"] for r in store.ratings("g") if r["item_id"] == PAIR.item_id] == ["A"]
    # Revoking the last invitation closes the panel; it does not reopen it to typed names.
    assert store.has_invitations("g") and access.access_mode(store, goal) == access.INVITATION
    with pytest.raises(HarnessError):
        access.sign_in(store, goal, name="bob")
    assert [r["revoked_at"] is not None for r in store.invitations("g")] == [True]


def test_inviting_again_replaces_the_earlier_token(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    old = _invite(store, "carol")
    new = _invite(store, "CAROL")
    assert [r["revoked_at"] is None for r in store.invitations("g")] == [False, True]
    with pytest.raises(HarnessError):
        access.sign_in(store, _goal(), token=old)
    assert access.sign_in(store, _goal(), token=new).name == "carol"
    # An invitation is for one goal only.
    with pytest.raises(HarnessError):
        access.sign_in(store, SimpleNamespace(goal="other", human=HumanSpec()), token=new)
    assert store.invitation(panel.invitation_hash(new))["goal"] == "g"


def test_open_goal_normalises_typed_names_and_closes_when_invitations_start(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    goal = _goal()
    ann = access.sign_in(store, goal, name="  ANN\u200b ")
    assert (ann.name, ann.via) == ("ann", access.OPEN)
    access.save_rating(store, goal, ann, ITEM, "formal", 4)
    assert access.sign_in(store, goal, name="Ann").name == "ann"  # one rater, however typed
    _invite(store, "dave")
    with pytest.raises(HarnessError, match="invitation"):
        access.save_rating(store, goal, ann, ITEM, "formal", 1)
    assert _rows(store) == {("ann", "formal"): 4.0}


def test_a_goal_with_shared_tokens_is_refused_with_its_line_and_what_to_do(tmp_path):
    """Issue 11: with the deprecated ``human.tokens`` any token holder could type any rater's
    name. The key is now a validation error at its line, naming the per-rater invitation."""
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.errors import InputError
    from harness.goals import load_goal
    from tests.helpers import chat, write_jsonl

    data = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}", "a") for i in range(10)])
    goal = tmp_path / "g.yaml"
    goal.write_text(f"goal: g\ndata: {{path: {data}}}\nsuccess:\n  - {{metric: accuracy, at_least: 0.5}}\n"
                    "human:\n  rubrics: [tone]\n  tokens: [s3cret]\n")
    with pytest.raises(InputError) as e:
        load_goal(goal)
    (prob,) = e.value.problems
    assert (prob.line, prob.field) == (7, "human.tokens") and "harness panel invite GOAL NAME" in prob.message
    result = CliRunner().invoke(app, ["check", str(goal), "--no-tokenizer"])
    out = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code == 2 and f"{goal}:7" in out and "human.tokens" in out and "Traceback" not in out, out
    with pytest.raises(Exception, match="harness panel invite"):
        HumanSpec(rubrics=["tone"], tokens=["x"])
    # A run's stored config (model_dump writes the empty default) still reads back.
    assert HumanSpec.model_validate(HumanSpec(rubrics=["tone"]).model_dump()).tokens == []
    assert access.access_mode(Store(tmp_path / "s.duckdb"), _goal()) == access.OPEN


@pytest.mark.parametrize("address, local", [("localhost", True), ("127.0.0.1", True), ("127.1.2.3", True),
                                            ("::1", True), ("[::1]", True), ("LOCALHOST", True), (None, False),
                                            ("", False), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
                                            ("example.org", False), ("localhost.evil.org", False)])
def test_only_loopback_addresses_count_as_local(address, local):
    assert access.is_loopback(address) is local


def test_owner_token_check():
    assert access.check_owner("own3r", "own3r") and access.check_owner("own3r", " own3r ")
    assert not access.check_owner("own3r", "own3") and not access.check_owner("own3r", None)
    assert not access.check_owner(None, "") and not access.check_owner("", "")
