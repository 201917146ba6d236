"""Find, mask and scrub personal data with offline rules (regex + checksums), no models.

Kinds: EMAIL, PHONE, CREDIT_CARD (Luhn-checked), IP (v4 and v6), IBAN (mod-97 checked)
and NAME (where a cue makes it likely: an honorific, "my name is", a sign-off; or a
common given name from ``first_names.txt`` followed by a capitalised surname).
Precision is preferred over recall: a scrubbed placeholder in the wrong place damages
the data, so ambiguous numbers (years, prices, order numbers, dates) are left alone.
"""
from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.data.formats import Example, load_examples, make_example, write_jsonl
from harness.errors import HarnessError

KINDS: tuple[str, ...] = ("EMAIL", "IBAN", "CREDIT_CARD", "IP", "PHONE", "NAME")
"""In priority order: when two matches overlap, the earlier kind wins."""

PLACEHOLDERS: dict[str, str] = {k: f"<{k}>" for k in KINDS}


@dataclass(frozen=True)
class PIIMatch:
    kind: str
    start: int
    end: int
    text: str


# --- EMAIL -------------------------------------------------------------------------------

# Unicode local parts and domains (josé@exämple.com), and the apostrophe RFC 5322 allows in a
# local part (o'brien@example.ie, also typed as ’).
_EMAIL = re.compile(
    r"(?<![\w.+'’-])[^\W_][\w.%+'’-]*@(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,24}\b"
)


def _emails(text: str) -> list[PIIMatch]:
    return [PIIMatch("EMAIL", m.start(), m.end(), m.group()) for m in _EMAIL.finditer(text)]


# --- CREDIT_CARD -------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w+.\-])\d(?:[ \-]?\d){12,18}(?![\w\-]|\.\d)")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _card_layout_ok(lens: list[int]) -> bool:
    """Printed card layouts: unbroken, 4-4-4-4(-1..3), 4-4-4-1..3, or Amex/Diners 4-6-5 / 4-6-4."""
    if len(lens) == 1:
        return True
    if lens in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(n == 4 for n in lens[:-1]) and 1 <= lens[-1] <= 4 and len(lens) >= 4


def _issuer_ok(digits: str) -> bool:
    """Major issuer prefixes (IIN ranges): Visa 4, Mastercard 51-55/2221-2720, Amex 34/37,
    Diners 30/36/38, JCB 35, Discover/UnionPay 60/62/64/65. Lists of years fail here."""
    if digits[0] == "4":
        return True
    two, four = int(digits[:2]), int(digits[:4])
    return (51 <= two <= 55 or 2221 <= four <= 2720 or two in (34, 37, 30, 36, 38, 35)
            or two in (60, 62, 64, 65))


def _cards(text: str) -> list[PIIMatch]:
    out = []
    for m in _CARD.finditer(text):
        raw = m.group()
        # The regex is greedy ("4111 1111 1111 1111 12/25" takes the expiry month): try shorter
        # prefixes of whole groups too.
        seps = [g.start() for g in re.finditer(r"[ \-]", raw)] + [len(raw)]
        for cut in reversed(seps):
            piece = raw[:cut]
            groups = re.split(r"[ \-]", piece)
            digits = "".join(groups)
            if not 13 <= len(digits) <= 19 or not _card_layout_ok([len(g) for g in groups]):
                continue
            if not _issuer_ok(digits) or not luhn_ok(digits):
                continue
            end = m.start() + cut
            if re.search(r"\d[ \-]$", text[max(0, m.start() - 2):m.start()]) and re.match(r"[ \-]\d", text[end:]):
                break  # a slice of a longer run of numbers (a table), not a card
            out.append(PIIMatch("CREDIT_CARD", m.start(), end, piece))
            break
    return out


# --- IBAN --------------------------------------------------------------------------------

# Official lengths; an unknown country code is accepted at any length 15-34 if mod-97 holds.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

_IBAN_START = re.compile(r"\b[A-Z]{2}\d{2}(?=[ ]?[A-Z0-9])")
_IBAN_BODY = re.compile(r"(?:[ ]?[A-Z0-9]){11,30}")


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    want = IBAN_LENGTHS.get(compact[:2])
    if want is not None and len(compact) != want:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _ibans(text: str) -> list[PIIMatch]:
    out = []
    for m in _IBAN_START.finditer(text):
        body = _IBAN_BODY.match(text, m.end())
        if not body:
            continue
        # Positions of each alphanumeric character, so a shorter valid prefix maps back to a span.
        span_text = text[m.start():body.end()]
        pos = [m.start() + i for i, ch in enumerate(span_text) if ch != " "]
        compact = span_text.replace(" ", "")
        want = IBAN_LENGTHS.get(compact[:2])
        lengths = [want] if want else range(min(len(compact), 34), 14, -1)
        for n in lengths:
            if n <= len(compact) and iban_ok(compact[:n]):
                end = pos[n - 1] + 1
                if end < len(text) and text[end].isalnum():
                    continue  # the number runs on into a word: not a clean IBAN
                out.append(PIIMatch("IBAN", m.start(), end, text[m.start():end]))
                break
    return out


# --- IP ----------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_IPV6_CAND = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:])"
)


_VERSION_CUE = re.compile(r"(?i)\b(?:version|ver\.?|v|release|build)[ ]?$")


def _ips(text: str) -> list[PIIMatch]:
    out = [PIIMatch("IP", m.start(), m.end(), m.group()) for m in _IPV4.finditer(text)
           if not _VERSION_CUE.search(text[max(0, m.start() - 12):m.start()])]
    for m in _IPV6_CAND.finditer(text):
        cand = m.group()
        # Times ("10:30:00") and C++ scopes ("std::vector") fail the parse or the digit test.
        if len(cand) < 6 or not any(ch.isdigit() for ch in cand):
            continue
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        out.append(PIIMatch("IP", m.start(), m.end(), cand))
    return out


# --- PHONE -------------------------------------------------------------------------------

_PHONE_CAND = re.compile(r"(?<![\w+#$€£¥./\-])(?:\+[ ]?)?\(?\d[\d \-.()]{4,}\d\)?(?![\w%]|[.,]\d)")
_PHONE_CUE = re.compile(r"(?i)\b(?:tel|telephone|phone|ph|call|calls|mobile|cell|fax|sms|text|whatsapp|"
                        r"contact|reach|dial|ring)\b[^\n]{0,25}$")
_NOT_PHONE_CUE = re.compile(r"(?i)(?:\b(?:order|invoice|ticket|ref|reference|tracking|case|account|acct|"
                            r"id|serial|sku|isbn|po|receipt|confirmation|version|v)\b\.?\s*(?:no\.?|number|#)?"
                            r"\s*[:#]?\s*|[#$€£¥]\s*)$")


def _looks_like_date(groups: list[str]) -> bool:
    lens = [len(g) for g in groups]
    if lens in ([4, 2, 2], [2, 2, 4], [1, 2, 4], [2, 1, 4], [1, 1, 4], [4, 1, 1], [4, 1, 2], [4, 2, 1]):
        year = groups[0] if lens[0] == 4 else groups[2]
        return 1900 <= int(year) <= 2100
    return False


def _phone_shape_ok(cand: str, cue: bool) -> bool:
    """Accept common international and national layouts; reject years, dates and decimals."""
    if cand.count("(") != cand.count(")"):
        return False
    groups = re.findall(r"\d+", cand)
    digits = "".join(groups)
    n = len(digits)
    seps = set(re.sub(r"[\d+()]", "", cand))
    if _looks_like_date(groups):
        return False
    if seps == {"."} and len(groups) <= 2:
        return False  # a decimal number
    if cand.startswith("+"):
        return 8 <= n <= 16 and (len(groups) == 1 or len(groups[0]) <= 3)
    if digits.startswith("00"):
        return 10 <= n <= 17 and len(groups) >= 3
    lens = [len(g) for g in groups]
    if lens == [3, 3, 4] and digits[0] not in "01":
        return True  # NANP: (415) 555-0132, 415.555.0132
    if lens == [1, 3, 3, 4] and groups[0] == "1":
        return True  # 1-800-555-0199
    if digits[0] == "0" and 9 <= n <= 12 and len(groups) >= 2 and 2 <= lens[0] <= 5 \
            and all(2 <= x <= 8 for x in lens):
        return True  # trunk-prefix national numbers: 020 7946 0958, 07700 900123, 01 23 45 67 89
    if cue and 7 <= n <= 15:
        return True  # "call 555-0132", "phone: 4155550132"
    return False


def _phones(text: str) -> list[PIIMatch]:
    out = []
    for m in _PHONE_CAND.finditer(text):
        before = text[max(0, m.start() - 40):m.start()]
        cand = m.group()
        if _NOT_PHONE_CUE.search(before) and not cand.startswith("+"):
            continue
        if len(re.findall(r"\d+", cand)) > 8 and not cand.startswith("+"):
            continue  # a run of many numbers is a table or a list, not a phone number
        # A known layout beats a cue-only match ("call 415 555 0132 2 times" keeps the "2" out).
        found = _best_phone_span(cand, False)
        if found is None and _PHONE_CUE.search(before):
            found = _best_phone_span(cand, True)
        if found:
            s, e = found
            out.append(PIIMatch("PHONE", m.start() + s, m.start() + e, cand[s:e]))
    return out


def _best_phone_span(cand: str, cue: bool) -> tuple[int, int] | None:
    """The longest run of whole digit groups inside ``cand`` that has a phone's shape.

    The candidate regex is greedy ("415 555 0132 2 times"), so trailing or leading groups
    that break the shape are dropped before giving up.
    """
    spans = [(g.start(), g.end()) for g in re.finditer(r"\d+", cand)]
    best = None
    for i in range(len(spans)):
        # No phone layout has more than 7 groups; the window keeps number tables linear.
        for j in range(min(len(spans) - 1, i + 6), i - 1, -1):
            s, e = spans[i][0], spans[j][1]
            # Pull in a "+" or "(" just before and a ")" just after, so "(415) 555-0132" stays whole.
            while s > 0 and cand[s - 1] in "+( ":
                if cand[s - 1] == " " and (s < 2 or cand[s - 2] != "+"):
                    break
                s -= 1
            if e < len(cand) and cand[e] == ")" and cand[s:e].count("(") > cand[s:e].count(")"):
                e += 1
            piece = cand[s:e]
            if _phone_shape_ok(piece, cue) and (best is None or e - s > best[1] - best[0]):
                best = (s, e)
        if best is not None:
            return best
    return best


# --- NAME --------------------------------------------------------------------------------

def _char_class(keep: Callable[[str], bool]) -> str:
    """The body of a regex character class holding every BMP character ``keep`` accepts, as ranges
    (Python's ``re`` has no ``\\p{Lu}``)."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x10000):
        if keep(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


# Upper- and lower-case letters of every script: Müller, Fernández, Łukasz, Wiśniewski, Ólafsdóttir.
_UP, _LO = _char_class(str.isupper), _char_class(lambda ch: ch.islower() and ch.isalpha())
_NW = (rf"(?:[{_UP}]['’][{_UP}][{_LO}]+|[{_UP}][{_LO}]+(?:[{_UP}][{_LO}]+)?(?:-[{_UP}][{_LO}]+)?"
       rf"|[{_UP}]\.)")
_NAME_SEQ = rf"{_NW}(?:[ ]+{_NW}){{0,2}}"
_HONORIFIC = re.compile(rf"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Mister|Madam)\.?[ ]+({_NAME_SEQ})")
_MY_NAME = re.compile(rf"(?i:\b(?:my name is|my name's|my name’s|(?:full|first|last) name(?: is|:))|"
                      rf"(?:^|(?<=\n))[ \t]*name:)[ ]+({_NAME_SEQ})", re.M)
_SIGN_OFF = re.compile(
    rf"(?i:\b(?:signed|regards|sincerely|yours truly|yours faithfully|best wishes))[ ]*,?[ \t]*\n?[ \t]*({_NAME_SEQ})"
    rf"|(?i:\b(?:thanks|thank you|cheers|best))[ ]*,[ \t]*\n?[ \t]*({_NAME_SEQ})[ \t]*[.!]?[ \t]*(?=\n|$)"
)
_NOT_NAMES = frozenset("""
a an and are as at be but by for from he her his i if in is it its me my no not of on or our she so
that the their them then there these they this to us was we were what when where which who why will
with you your hi hello hey dear thanks thank please regards sincerely best kind warm team support
customer customers service services staff everyone all guys again sir madam admin management department
mr mrs ms mx miss dr prof dame mister
monday tuesday wednesday thursday friday saturday sunday january february march april may june july
august september october november december today tomorrow yesterday
""".split())


def _trim_name(seq: str) -> tuple[int, int] | None:
    """Drop leading/trailing words that are not names; None when nothing name-like is left."""
    words = [(w.start(), w.end(), w.group()) for w in re.finditer(r"\S+", seq)]
    while words and words[-1][2].rstrip(".").lower() in _NOT_NAMES:
        words.pop()
    if not words or words[0][2].rstrip(".").lower() in _NOT_NAMES:
        return None
    # An initial alone ("Mr. J.") is too little to call a name.
    if all(len(w[2].rstrip(".")) <= 1 for w in words):
        return None
    return words[0][0], words[-1][1]


def _first_names() -> frozenset[str]:
    global _FIRST
    if _FIRST is None:
        text = (Path(__file__).with_name("first_names.txt")).read_text(encoding="utf-8")
        _FIRST = frozenset(w for line in text.splitlines() if not line.startswith("#") for w in line.split())
    return _FIRST


_FIRST: frozenset[str] | None = None
# A capitalised word that may be a given name, and what must follow it. Two patterns, not one, so
# that "Ask José Álvarez" is read from José as well as from Ask (finditer never overlaps).
_GIVEN = re.compile(rf"\b[{_UP}][{_LO}]+(?=[ ]+[{_UP}])")
_SURNAME = re.compile(rf"[ ]+({_NW}(?:[ ]+{_NW})?)(?![{_UP}{_LO}])")
# Letters NFKD does not take apart: Łukasz is lukasz, Søren soren, Weiß weiss.
_FOLD = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ß": "ss", "æ": "ae", "œ": "oe",
                       "ı": "i"})


def fold_name(word: str) -> str:
    """A given name as the first-name list spells it: lower case, accents dropped (Émilie → emilie)."""
    decomposed = unicodedata.normalize("NFKD", word.lower().translate(_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _given_names(text: str) -> list[PIIMatch]:
    """A known given name followed by a capitalised surname: "Contact: Ada Lovelace", "Émilie Dubois"."""
    first = _first_names()
    out = []
    for given in _GIVEN.finditer(text):
        if fold_name(given.group()) not in first:
            continue
        m = _SURNAME.match(text, given.end())
        trimmed = _trim_name(m.group(1)) if m else None
        if m is None or trimmed is None or trimmed[0] != 0:
            continue
        end = m.start(1) + trimmed[1]
        out.append(PIIMatch("NAME", given.start(), end, text[given.start():end]))
    return out


def _names(text: str) -> list[PIIMatch]:
    out = _given_names(text)
    for rx in (_HONORIFIC, _MY_NAME, _SIGN_OFF):
        for m in rx.finditer(text):
            gi = next(i for i in range(1, (rx.groups or 0) + 1) if m.group(i) is not None)
            seq = m.group(gi)
            trimmed = _trim_name(seq)
            if trimmed is None:
                continue
            s, e = m.start(gi) + trimmed[0], m.start(gi) + trimmed[1]
            out.append(PIIMatch("NAME", s, e, text[s:e]))
    return out


# --- public API --------------------------------------------------------------------------

_FINDERS = {"EMAIL": _emails, "IBAN": _ibans, "CREDIT_CARD": _cards, "IP": _ips, "PHONE": _phones, "NAME": _names}


def find_pii(text: str, kinds: tuple[str, ...] | list[str] | None = None) -> list[PIIMatch]:
    """Every non-overlapping PII match in ``text``, in order of position.

    Overlaps are resolved by kind priority (:data:`KINDS` order), then by length.
    """
    wanted = KINDS if kinds is None else tuple(kinds)
    unknown = [k for k in wanted if k not in _FINDERS]
    if unknown:
        raise HarnessError(f"unknown PII kind(s) {unknown}; known: {', '.join(KINDS)}")
    if not text:
        return []
    cands = [m for k in wanted for m in _FINDERS[k](text)]
    cands.sort(key=lambda m: (KINDS.index(m.kind), -(m.end - m.start), m.start))
    taken: list[PIIMatch] = []
    for m in cands:
        if all(m.end <= t.start or m.start >= t.end for t in taken):
            taken.append(m)
    return sorted(taken, key=lambda m: m.start)


def scrub_text(text: str, kinds: tuple[str, ...] | list[str] | None = None) -> tuple[str, dict[str, int]]:
    """Replace each match with its typed placeholder (``<EMAIL>``...); return text and counts per kind."""
    matches = find_pii(text, kinds)
    counts = Counter(m.kind for m in matches)
    parts, pos = [], 0
    for m in matches:
        parts.append(text[pos:m.start])
        parts.append(PLACEHOLDERS[m.kind])
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts), dict(counts)


def _stars(s: str) -> str:
    return "*" * max(3, len(s) - 1) if len(s) > 1 else "***"


def mask(value: str, kind: str | None = None) -> str:
    """Show enough of a value to recognise its shape, not enough to recover it.

    >>> mask("jane.doe@example.com")
    'j***@e***.com'
    >>> mask("4111 1111 1111 1111")
    '**** **** **** 1111'
    """
    if kind is None:
        found = find_pii(value)
        kind = found[0].kind if len(found) == 1 and found[0].text == value else None
    if kind == "EMAIL" and "@" in value:
        local, _, domain = value.partition("@")
        host, dot, tld = domain.rpartition(".")
        return f"{local[:1]}***@{host[:1]}***{dot}{tld}"
    if kind == "CREDIT_CARD":
        digits = re.sub(r"\D", "", value)
        return "**** **** **** " + digits[-4:]
    if kind == "PHONE":
        total = sum(ch.isdigit() for ch in value)
        seen, out = 0, []
        for ch in value:
            if ch.isdigit():
                seen += 1
                out.append(ch if seen > total - 2 else "*")
            else:
                out.append(ch)
        return "".join(out)
    if kind == "IP":
        if ":" in value:
            return value.split(":")[0] + ":****:…"
        return value.split(".")[0] + ".***.***.***"
    if kind == "IBAN":
        compact = value.replace(" ", "")
        return f"{compact[:4]} **** **** {compact[-4:]}"
    if kind == "NAME":
        return " ".join(w[:1] + "***" for w in value.split())
    return " ".join(w[:1] + "***" for w in value.split())


def mask_text(text: str, kinds: tuple[str, ...] | list[str] | None = None) -> str:
    """Like :func:`scrub_text` but with masked values, for readable report samples."""
    matches = find_pii(text, kinds)
    parts, pos = [], 0
    for m in matches:
        parts.append(text[pos:m.start])
        parts.append(mask(m.text, m.kind))
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def scrub_example(ex: Example, kinds: tuple[str, ...] | list[str] | None = None) -> Example:
    """A copy of ``ex`` with PII replaced in every message and the reference.

    The id is recomputed from the scrubbed content (ids are content hashes); the old one is
    kept in ``extra["original_id"]``. A classification label is never rewritten.
    """
    prompt = []
    for m in ex.prompt:
        content, _ = scrub_text(m["content"], kinds)
        prompt.append({"role": m["role"], "content": content})
    reference = ex.reference if ex.format == "label" else scrub_text(ex.reference, kinds)[0]
    new = make_example(ex.format, prompt, reference, label=ex.label, line=ex.line, source=ex.source,
                       extra={**ex.extra, "original_id": ex.extra.get("original_id", ex.id)})
    return new


def _example_counts(ex: Example, kinds) -> Counter:
    counts: Counter = Counter()
    texts = [m["content"] for m in ex.prompt] + ([] if ex.format == "label" else [ex.reference])
    for t in texts:
        counts.update(m.kind for m in find_pii(t, kinds))
    return counts


@dataclass
class ScrubReport:
    """What :func:`scrub_file` did: counts per kind and the old → new id of each changed example."""

    src: str
    dst: str
    examples: int
    changed: int
    counts: dict[str, int] = field(default_factory=dict)
    id_map: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "examples": self.examples, "changed": self.changed,
                "counts": dict(self.counts), "id_map": dict(self.id_map)}


def scrub_file(src: str | Path, dst: str | Path, fmt: str | None = None,
               kinds: tuple[str, ...] | list[str] | None = None) -> ScrubReport:
    """Write a scrubbed JSONL copy of ``src`` to ``dst``; ``src`` itself is never touched.

    Raises :class:`~harness.errors.InputError` (all problems, with file:line) for bad input.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise HarnessError(f"refusing to scrub {src} in place: give a different destination file")
    examples = load_examples(src, fmt)
    counts: Counter = Counter()
    id_map: dict[str, str] = {}
    records = []
    for ex in examples:
        found = _example_counts(ex, kinds)
        counts.update(found)
        new = scrub_example(ex, kinds) if found else ex
        if found:
            id_map[ex.id] = new.id
        # Same record shape as the input: the bookkeeping key stays out of the file.
        extra = {k: v for k, v in new.extra.items() if k != "original_id" or k in ex.extra}
        records.append(replace(new, extra=extra).to_record())
    write_jsonl(dst, records)
    return ScrubReport(src=str(src), dst=str(dst), examples=len(examples), changed=len(id_map),
                       counts=dict(counts), id_map=id_map)
