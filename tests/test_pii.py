"""PII detection, masking and scrubbing: planted values are found, look-alikes are not,
and a scrubbed copy never touches the original file."""
from __future__ import annotations

import hashlib
import json
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.data.formats import load_examples, make_example
from harness.data.pii import (KINDS, find_pii, iban_ok, luhn_ok, mask, mask_text, scrub_example, scrub_file,
                              scrub_text)
from harness.errors import HarnessError, InputError


def kinds_of(text: str) -> list[tuple[str, str]]:
    return [(m.kind, m.text) for m in find_pii(text)]


# --- true positives ----------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, value", [
    ("write to jane.doe@example.com today", "EMAIL", "jane.doe@example.com"),
    ("cc: Bob_Smith+tag@mail.co.uk.", "EMAIL", "Bob_Smith+tag@mail.co.uk"),
    ("call +1 415 555 0132 now", "PHONE", "+1 415 555 0132"),
    ("call (415) 555-0132 now", "PHONE", "(415) 555-0132"),
    ("it is 415-555-0132.", "PHONE", "415-555-0132"),
    ("or 415.555.0132", "PHONE", "415.555.0132"),
    ("toll free 1-800-555-0199", "PHONE", "1-800-555-0199"),
    ("London office 020 7946 0958", "PHONE", "020 7946 0958"),
    ("from abroad +44 20 7946 0958", "PHONE", "+44 20 7946 0958"),
    ("UK style +44 (0)20 7946 0958", "PHONE", "+44 (0)20 7946 0958"),
    ("mobile 07700 900123", "PHONE", "07700 900123"),
    ("Paris 01 23 45 67 89", "PHONE", "01 23 45 67 89"),
    ("E.164 +14155550132", "PHONE", "+14155550132"),
    ("phone: 555-0132", "PHONE", "555-0132"),
    ("visa 4111 1111 1111 1111 exp", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("card 4111 1111 1111 1111 12/25", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("mc 5555-5555-5555-4444", "CREDIT_CARD", "5555-5555-5555-4444"),
    ("amex 3782 822463 10005", "CREDIT_CARD", "3782 822463 10005"),
    ("raw 4012888888881881", "CREDIT_CARD", "4012888888881881"),
    ("server 192.168.1.20 is down", "IP", "192.168.1.20"),
    ("client 8.8.8.8.", "IP", "8.8.8.8"),
    ("v6 2001:db8::8a2e:370:7334 seen", "IP", "2001:db8::8a2e:370:7334"),
    ("link-local fe80::1 only", "IP", "fe80::1"),
    ("pay GB82 WEST 1234 5698 7654 32 please", "IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("pay DE89370400440532013000.", "IBAN", "DE89370400440532013000"),
    ("to FR14 2004 1010 0505 0001 3M02 606 thanks", "IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
    ("Dear Mr. John Smith,", "NAME", "John Smith"),
    ("ask Dr. Alvarez about it", "NAME", "Alvarez"),
    ("Hello, my name is Jane Roe and I need help", "NAME", "Jane Roe"),
    ("Kind regards,\nPeter O'Neil", "NAME", "Peter O'Neil"),
    ("That is all. Thanks, Priya", "NAME", "Priya"),
    ("Order form\nName: Maria Garcia\nQty: 2", "NAME", "Maria Garcia"),
    ("full name: Ada Lovelace", "NAME", "Ada Lovelace"),
])
def test_finds_planted_value(text, kind, value):
    assert (kind, value) in kinds_of(text)


# --- false positives ---------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "We were founded in 2019 and grew 35% by 2023.",
    "It costs $1,299.99 or £49.50, about 1 299 euros.",
    "Your order #48213 shipped; ticket 20230115-0042.",
    "Order number 415-555-0132 is on its way.",
    "Delivered on 2023-01-15 at 10:30:00, or 15.01.2023, or 01/02/2023.",
    "Between 1990-2000 prices rose.",
    "Pi is 3.14159265 and e is 2.71828.",
    "Card ending 4111 1111 1111 1112 was declined.",  # fails Luhn
    "Numbers 1234 5678 9012 3456 are a placeholder.",  # fails Luhn
    "Not an address: 999.10.10.10 or 10.0.0",
    "Release version 1.2.3.4 is out; use std::vector and a::b.",
    "IBAN GB82 WEST 1234 5698 7654 33 is wrong.",  # bad check digits
    "ISBN 978-3-16-148410-0 and tracking 1Z999AA10123456784",
    "Thanks, Team", "Regards,\nCustomer Support",
    "Dear Sir, the Monday meeting moved.",
    "I scored 98 out of 100 in 12 minutes.",
    "Sales in 2010 2011 2012 2013 rose steadily.",
    "Product name: Widget Pro is back.",
    " ".join(str(i) for i in range(2000)),  # a table of numbers
])
def test_no_false_positives(text):
    assert find_pii(text) == []


def test_non_luhn_card_not_reported_even_in_card_context():
    assert not [m for m in find_pii("my card is 4111111111111112") if m.kind == "CREDIT_CARD"]


def luhn_reference(number: str) -> bool:
    """An independent Luhn: sum digits of doubled values at odd positions from the right."""
    digits = [int(c) for c in number][::-1]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def test_luhn_matches_reference_on_random_numbers():
    rng = random.Random(3)
    for _ in range(2000):
        n = "".join(rng.choice("0123456789") for _ in range(rng.randint(13, 19)))
        assert luhn_ok(n) == luhn_reference(n), n


def test_iban_check_digits():
    assert iban_ok("GB82WEST12345698765432")
    assert iban_ok("NL91ABNA0417164300")
    assert not iban_ok("GB82WEST12345698765431")
    assert not iban_ok("GB82WEST1234569876543")  # wrong length for GB


def test_ip_octet_range():
    assert kinds_of("a 255.255.255.255 b") == [("IP", "255.255.255.255")]
    assert kinds_of("a 256.1.1.1 b") == []


def test_overlap_resolved_by_priority():
    # 15 digits after "call": a phone by cue, but also a Luhn-valid Amex number; the card wins.
    assert kinds_of("call 3782 822463 10005") == [("CREDIT_CARD", "3782 822463 10005")]
    # A greedy phone candidate does not swallow a following count.
    assert kinds_of("call me at 415 555 0132 2 times") == [("PHONE", "415 555 0132")]


def test_unknown_kind_is_an_error():
    with pytest.raises(HarnessError, match="unknown PII kind"):
        find_pii("x", kinds=["EMIAL"])


# --- scrub and mask ----------------------------------------------------------------------

def test_scrub_text_placeholders_and_counts():
    text = ("Mr. John Smith (john@example.com, +1 415 555 0132) paid with 4111 1111 1111 1111 "
            "from 10.0.0.7 to GB82 WEST 1234 5698 7654 32.")
    out, counts = scrub_text(text)
    assert out == ("Mr. <NAME> (<EMAIL>, <PHONE>) paid with <CREDIT_CARD> from <IP> to <IBAN>.")
    assert counts == {"NAME": 1, "EMAIL": 1, "PHONE": 1, "CREDIT_CARD": 1, "IP": 1, "IBAN": 1}
    assert set(counts) == set(KINDS)


def test_scrub_text_only_selected_kinds():
    out, counts = scrub_text("john@example.com at 10.0.0.7", kinds=["IP"])
    assert out == "john@example.com at <IP>" and counts == {"IP": 1}


@pytest.mark.parametrize("value, kind, expected", [
    ("jane.doe@example.com", "EMAIL", "j***@e***.com"),
    ("4111 1111 1111 1111", "CREDIT_CARD", "**** **** **** 1111"),
    ("GB82 WEST 1234 5698 7654 32", "IBAN", "GB82 **** **** 5432"),
    ("192.168.1.20", "IP", "192.***.***.***"),
    ("John Smith", "NAME", "J*** S***"),
])
def test_mask_shapes(value, kind, expected):
    assert mask(value, kind) == expected
    assert mask(value) == expected or kind == "NAME"  # kind is inferred except for bare names


def test_mask_phone_keeps_only_last_two_digits():
    masked = mask("+1 415 555 0132", "PHONE")
    assert masked.endswith("32") and sum(c.isdigit() for c in masked) == 2


def test_mask_text_hides_values():
    out = mask_text("mail jane.doe@example.com now")
    assert "jane.doe" not in out and "j***@e***.com" in out


def test_scrub_example_recomputes_id_and_keeps_original():
    ex = make_example("chat", [{"role": "user", "content": "I'm at jane@example.com"}], "Call 020 7946 0958.")
    new = scrub_example(ex)
    assert new.prompt[0]["content"] == "I'm at <EMAIL>"
    assert new.reference == "Call <PHONE>."
    assert new.extra["original_id"] == ex.id
    assert new.id != ex.id
    assert new.id == make_example("chat", [dict(m) for m in new.prompt], new.reference).id


def test_scrub_example_never_rewrites_a_label():
    ex = make_example("label", [{"role": "user", "content": "refund to 4111 1111 1111 1111"}], "billing",
                      label="billing")
    new = scrub_example(ex)
    assert new.input_text == "refund to <CREDIT_CARD>" and new.label == "billing" and new.reference == "billing"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PLANTED = {
    "EMAIL": ["jane.doe@example.com", "ops@corp.io"],
    "PHONE": ["+44 20 7946 0958", "(415) 555-0132"],
    "CREDIT_CARD": ["4111 1111 1111 1111"],
    "IP": ["203.0.113.9"],
    "IBAN": ["DE89 3704 0044 0532 0130 00"],
}


def test_scrub_file_chat(tmp_path):
    src = tmp_path / "support.jsonl"
    rows = [
        {"messages": [{"role": "system", "content": "Be calm."},
                      {"role": "user", "content": "I'm jane.doe@example.com, phone +44 20 7946 0958."},
                      {"role": "assistant", "content": "Thanks, we will email ops@corp.io."}], "topic": "x"},
        {"messages": [{"role": "user", "content": "Charge 4111 1111 1111 1111, not 4111 1111 1111 1112."},
                      {"role": "assistant", "content": "Done. Your IP 203.0.113.9 was logged."}]},
        {"messages": [{"role": "user", "content": "Wire to DE89 3704 0044 0532 0130 00 or call (415) 555-0132"},
                      {"role": "assistant", "content": "Order #48213 ships in 2024."}]},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    before = sha(src)
    dst = tmp_path / "out" / "support.scrubbed.jsonl"
    report = scrub_file(src, dst)

    assert sha(src) == before  # original untouched
    assert report.examples == 3 and report.changed == 3
    assert report.counts == {k: len(v) for k, v in PLANTED.items()}
    text = dst.read_text(encoding="utf-8")
    for values in PLANTED.values():
        for v in values:
            assert v not in text
    assert "4111 1111 1111 1112" in text  # not a card: left alone
    assert "#48213" in text and "2024" in text
    out = [json.loads(line) for line in text.splitlines()]
    assert [set(r) for r in out] == [set(r) for r in rows]  # same record shape, no bookkeeping keys
    assert out[0]["topic"] == "x"
    assert out[0]["messages"][1]["content"] == "I'm <EMAIL>, phone <PHONE>."
    reloaded = load_examples(dst)
    originals = load_examples(src)
    assert report.id_map == {o.id: n.id for o, n in zip(originals, reloaded)}


def test_scrub_file_completion_and_label(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"prompt": "Mail a@b.com", "completion": "OK, Dr. Alvarez will reply."}) + "\n")
    dst = tmp_path / "c2.jsonl"
    scrub_file(src, dst)
    assert json.loads(dst.read_text()) == {"prompt": "Mail <EMAIL>", "completion": "OK, Dr. <NAME> will reply."}

    lab = tmp_path / "l.jsonl"
    lab.write_text(json.dumps({"text": "my ip is 10.1.2.3", "label": "network"}) + "\n")
    scrub_file(lab, tmp_path / "l2.jsonl")
    assert json.loads((tmp_path / "l2.jsonl").read_text()) == {"text": "my ip is <IP>", "label": "network"}


def test_scrub_file_refuses_in_place(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"prompt": "a@b.com", "completion": "ok"}) + "\n")
    before = sha(src)
    with pytest.raises(HarnessError, match="in place"):
        scrub_file(src, src)
    assert sha(src) == before


def test_scrub_file_bad_input_names_file_and_line(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"prompt": "ok", "completion": "ok"}) + "\n{not json\n")
    with pytest.raises(InputError) as err:
        scrub_file(src, tmp_path / "o.jsonl")
    assert err.value.problems[0].line == 2 and "bad.jsonl" in str(err.value)
    assert not (tmp_path / "o.jsonl").exists()


# A planted set: names with and without cue words, and capitalised text that is not a name.
_PLANTED_NAMES = [
    ("Contact: Ada Lovelace", "Ada Lovelace"), ("Please ask Maria Garcia about the refund", "Maria Garcia"),
    ("I spoke with David Chen yesterday", "David Chen"), ("Forward this to Priya Sharma", "Priya Sharma"),
    ("Account holder Thomas Müller", "Thomas Müller"), ("Ship it to Olga Petrova, Berlin", "Olga Petrova"),
    ("Kenji Watanabe placed the order", "Kenji Watanabe"), ("my name is Lena Fischer", "Lena Fischer"),
    ("Regards,\nSam Okafor", "Sam Okafor"), ("Dr. Helen O'Connor approved it", "Helen O'Connor"),
    ("Talk to Fatima Zahra at the desk", "Fatima Zahra"), ("Mohammed Al-Sayed called twice", None),
    ("Luis Fernández asked for an invoice", "Luis Fernández"), ("Card owner: Emily Brown", "Emily Brown"),
    ("The parcel was signed by James Wilson", "James Wilson"), ("Thanks, Anna", "Anna"),
    ("Sophie Martin wants a callback", "Sophie Martin"), ("Cheers, Nils", "Nils"),
    ("Mr Patel cannot log in", "Patel"), ("Nicole Kidd reset her password", "Nicole Kidd"),
    # Names outside ASCII (and outside Latin-1): the given name is looked up accent-folded.
    ("Contact: Émilie Dubois", "Émilie Dubois"), ("Łukasz Wiśniewski called about the delivery", "Łukasz Wiśniewski"),
    ("Please ask José Álvarez", "José Álvarez"), ("Björn Sørensen wrote again", "Björn Sørensen"),
    ("Forward it to Zoë Ångström", "Zoë Ångström"), ("Dr. Małgorzata Nowak approved it", "Małgorzata Nowak"),
    ("François Lefèvre is the account owner", "François Lefèvre"), ("Ask Jürgen Weiß", "Jürgen Weiß"),
]
# Every name above that the detector should find whole, outside ASCII: checked one by one too.
_UNICODE_NAMES = ["Émilie Dubois", "Łukasz Wiśniewski", "José Álvarez", "Björn Sørensen", "Zoë Ångström",
                  "Małgorzata Nowak", "François Lefèvre", "Jürgen Weiß"]
_NOT_NAMES_SET = [
    "Will Shipping arrive on Monday?", "The Billing Team said no", "I use Google Chrome on Windows",
    "My order from Amazon Prime is late", "Express Delivery failed", "Premium Support never answered",
    "New York Times subscription renewal", "Apple Pay was declined", "Black Friday discount missing",
    "Customer Service Desk closed early", "Order Number 5512 is wrong", "Visa Card expired",
    "Über Eats refund is missing", "École Polytechnique sent the invoice", "Île-de-France delivery is late",
]


def test_names_without_cue_words_are_found_with_measured_recall_and_precision():
    from harness.data.pii import find_pii

    found = 0
    planted = [(t, n) for t, n in _PLANTED_NAMES]
    for text, name in planted:
        hits = [m.text for m in find_pii(text, ["NAME"])]
        found += bool(hits) and (name is None or any(name in h or h in name for h in hits))
    recall = found / len(planted)
    false = sum(bool(find_pii(t, ["NAME"])) for t in _NOT_NAMES_SET)
    assert recall >= 0.9, recall  # measured 28/28 (21/28 before non-ASCII names were read); the message says when it drops
    assert false == 0
    for text, name in _PLANTED_NAMES:
        if name in _UNICODE_NAMES:  # found whole: no part of the name is left behind
            assert [m.text for m in find_pii(text, ["NAME"])] == [name], text


def test_unicode_and_apostrophe_emails_are_scrubbed_whole():
    from harness.data.pii import scrub_text

    assert scrub_text("mail josé@exämple.com today")[0] == "mail <EMAIL> today"
    assert scrub_text("o'brien@example.ie wrote")[0] == "<EMAIL> wrote"
    assert scrub_text("(ünïcode.user+tag@bücher.de)")[0] == "(<EMAIL>)"
