#!/usr/bin/env python3
"""Generate the three shipped datasets, deterministically, with the standard library only.

    python data/make_demo.py            # rewrite data/demo.jsonl, support_replies.jsonl, python_tasks.jsonl
    python data/make_demo.py --out DIR  # write them into DIR instead

Every text is written for this project from templates and slot fillers below (no scraped
data, no real people: names, e-mail addresses, phone and card numbers are fictional or
documented test values). Each dataset has its own ``random.Random(seed)``, so editing one
generator leaves the other files byte-identical. ``tests/test_shipped_goals.py`` checks
that rerunning this script reproduces the committed files exactly.

* ``demo.jsonl`` — 400 chat records routing a customer-support message to one of five
  queues (the answer is just the queue name). Built so a 135M model can learn it with a
  few minutes of LoRA while zero-shot prompting stays weak.
* ``support_replies.jsonl`` — 200 chat records: a calm, on-topic support agent for the
  fictional "Nimbus" cloud-storage app; some user turns carry planted fake PII.
* ``python_tasks.jsonl`` — 150 prompt/completion records: small Python tasks answered with
  a fenced code block that handles errors with try/except.
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Callable, Iterable

HERE = Path(__file__).resolve().parent

# A candidate text is rejected when it is this similar (Jaccard over word sets and over
# word bigrams) to one already accepted: templates alone would give near-duplicates.
MAX_WORD_JACCARD = 0.7
MAX_BIGRAM_JACCARD = 0.6


# ============================================================== shared helpers

def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9#$€.%'-]+", text.lower())


def _shingles(text: str) -> tuple[frozenset, frozenset]:
    w = _words(text)
    return frozenset(w), frozenset(zip(w, w[1:]))


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class DedupPool:
    """Accepts texts that are neither exact nor near duplicates of earlier ones."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.sigs: list[tuple[frozenset, frozenset]] = []

    def add(self, text: str) -> bool:
        key = " ".join(_words(text))
        if key in self.seen:
            return False
        sig = _shingles(text)
        for other in self.sigs:
            if _jaccard(sig[0], other[0]) > MAX_WORD_JACCARD or _jaccard(sig[1], other[1]) > MAX_BIGRAM_JACCARD:
                return False
        self.seen.add(key)
        self.sigs.append(sig)
        return True


class ShinglePool:
    """Rejects texts whose 3-word-shingle Jaccard with an accepted one reaches ``max_jaccard``.

    This mirrors how ``harness check`` and the split's leakage report measure near-duplicates
    (the whole example, system turn included), so the shipped files come out clean there.
    """

    def __init__(self, max_jaccard: float = 0.75, k: int = 3) -> None:
        self.max_jaccard, self.k = max_jaccard, k
        self.sets: list[frozenset] = []

    def add(self, text: str) -> bool:
        w = re.findall(r"\w+", text.lower())
        sh = frozenset(" ".join(w[i:i + self.k]) for i in range(max(1, len(w) - self.k + 1)))
        if any(_jaccard(sh, other) >= self.max_jaccard for other in self.sets):
            return False
        self.sets.append(sh)
        return True


def _fill(rng: random.Random, template: str, slots: dict[str, list[str] | Callable[[random.Random], str]],
          chosen: dict[str, str] | None = None, pattern: str = r"\{(\w+)\}") -> str:
    """Replace each ``{name}`` with a draw from ``slots[name]``; ``{name2}`` draws a different value.

    Pass the same ``chosen`` dict to several calls to keep a slot's value across them.
    """
    chosen = {} if chosen is None else chosen

    def draw(match: re.Match) -> str:
        name = match.group(1)
        if name in chosen:
            return chosen[name]
        base = name.rstrip("2")
        source = slots[base]
        for _ in range(20):
            value = source(rng) if callable(source) else rng.choice(source)
            if name == base or value != chosen.get(base):
                break
        chosen[name] = value
        return value

    return re.sub(pattern, draw, template)


def _write_jsonl(path: Path, records: Iterable[dict]) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


# ============================================================== demo: routing to a queue

QUEUES = ("billing", "shipping", "technical", "account", "refund")

ROUTING_INSTRUCTION = (
    "Route the customer message to one queue.\n"
    "billing: charges, invoices, payment methods\n"
    "shipping: delivery, tracking, delivery address\n"
    "technical: app or device errors, setup\n"
    "account: login, password, profile, closing the account\n"
    "refund: money back for returns, cancellations, faulty items\n"
    "Answer with the queue name only."
)

DEMO_SLOTS: dict[str, list[str] | Callable[[random.Random], str]] = {
    "product": ["wireless earbuds", "standing desk", "coffee grinder", "smart thermostat", "yoga mat",
                "air fryer", "hiking backpack", "phone case", "desk lamp", "robot vacuum", "electric kettle",
                "hiking boots", "blender", "mechanical keyboard", "monitor stand", "water bottle",
                "rain jacket", "baby monitor", "webcam", "power bank", "espresso machine", "office chair",
                "smart doorbell", "fitness tracker", "bluetooth speaker", "label printer", "e-reader",
                "security camera", "electric toothbrush", "drone"],
    "order": lambda r: f"#{r.randrange(10000, 99999)}",
    "amount": lambda r: r.choice(["$", "$", "€", "£"]) + f"{r.randrange(5, 400)}.{r.choice(['00', '99', '49', '95', '50'])}",
    "device": ["iPhone", "Android phone", "Windows laptop", "MacBook", "iPad", "Chromebook", "Pixel phone",
               "Samsung tablet", "smart TV", "Linux desktop", "old iPhone 8", "work laptop"],
    "error": ["error 502", "error code E-104", "'Session expired'", "a blank white screen",
              "'Something went wrong'", "error 0x80070005", "'Unable to connect'", "code 17",
              "'Request timed out'", "'Invalid token'", "a spinning wheel forever", "error 500"],
    "days": ["three days", "a week", "10 days", "two weeks", "five days", "six days", "eight days",
             "12 days", "nearly a month", "four days"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
    "gadget": ["wireless earbuds", "smart thermostat", "robot vacuum", "baby monitor", "webcam", "smart doorbell",
               "fitness tracker", "bluetooth speaker", "label printer", "e-reader", "security camera", "drone",
               "smart plug", "game controller", "wifi extender", "smartwatch"],
    "payment": ["Visa card", "Mastercard", "PayPal", "Apple Pay", "gift card", "debit card", "Amex card",
                "Google Pay"],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December"],
    "day": ["Friday", "the weekend", "Tuesday", "tomorrow", "the 14th", "next Monday", "Thursday"],
    "city": ["Leeds", "Lyon", "Denver", "Porto", "Austin", "Utrecht", "Glasgow", "Graz", "Tampa",
             "Malmo", "Cork", "Boise"],
    "country": ["Canada", "Iceland", "Portugal", "New Zealand", "Mexico", "Norway", "Japan", "Chile"],
    "carrier": ["UPS", "DHL", "FedEx", "the courier", "the post office", "the delivery driver", "Royal Mail"],
    "feature": ["the camera", "settings", "my orders", "the chat", "checkout", "the map", "search", "the scanner"],
    "action": ["upload a photo", "save my settings", "open the dashboard", "sync my devices",
               "scan the QR code", "export a report", "start the app", "install the update"],
    "version": ["4.2", "4.3.1", "5.0", "3.9", "5.1.2", "4.8"],
    "pct": ["37", "50", "62", "88", "99", "12"],
    "browser": ["Firefox", "Safari", "Chrome", "Edge", "Brave"],
    "n": ["two", "three", "five", "six", "eight"],
    "plan": ["Basic", "Plus", "Premium", "Family", "Business"],
    "lang": ["Spanish", "German", "French", "Italian", "Dutch", "Polish"],
}

# Each queue: many core sentences. Hard ones (marked "# hard") mention another queue's topic
# but the action needed decides the label, as the instruction defines the queues.
DEMO_CORES: dict[str, list[str]] = {
    "billing": [
        "I was charged {amount} twice for order {order}.",
        "My invoice for {month} says {amount}, but my {plan} plan should cost less.",
        "Can I switch my payment method from {payment} to {payment2}?",
        "Why did my {plan} subscription go up to {amount} a month?",
        "Please send me a VAT invoice for order {order}.",
        "There's a charge of {amount} on my statement that I don't recognise.",
        "How do I change the billing address printed on my invoices?",
        "Do you offer yearly billing? Paying {amount} every month adds up.",
        "The trial ended and you billed me {amount}, I thought the {plan} plan was {amount2}.",
        "Can you apply my discount code to the invoice for order {order}?",
        "Is it possible to pay for the {product} in instalments?",
        "The receipt for order {order} is missing the tax line.",
        "I see a pending authorisation of {amount} from you, when will it be released?",
        "Can I pay for order {order} with {payment} instead?",
        "My {month} statement has a late fee of {amount} but I paid on time.",
        "Where can I download my invoices for {month} and {month2}?",
        "Please turn off auto-renew before the next {amount} charge on my {payment}.",
        "Our company needs invoices in the company name, not mine, from {month} on.",
        "How much is the {plan} plan if I add a second user?",
        "My {payment} was charged {amount} for a plan I downgraded in {month}.",
        "I returned the {product} and got my money back, but this month you charged me {amount} again.",  # hard
        "Order {order} arrived fine, but my {payment} was charged {amount} instead of {amount2}.",  # hard
    ],
    "shipping": [
        "Where is my order {order}? It's been {days}.",
        "Tracking for order {order} hasn't updated in {days}.",
        "Can I change the delivery address for order {order} to my office in {city}?",
        "{carrier} says my {product} was delivered but nothing arrived.",
        "Do you ship to {country}? I'd like to order the {product}.",
        "My {product} was meant to arrive by {day}, now tracking says next week.",
        "Order {order} has said 'label created' for {days}. Has it actually shipped?",
        "Can I collect order {order} from a parcel locker in {city} instead?",
        "Only half of order {order} came, the {product} is missing from the box.",
        "How long does standard delivery to {city} usually take?",
        "{carrier} left my {product} with a neighbour I've never met.",
        "Is express delivery possible for the {product}? I need it by {day}.",
        "{carrier} sent order {order} back to you. Can you ship it again?",
        "My parcel with the {product} is stuck in customs in {city}.",
        "Can you send orders {order} and {order2} together in one box?",
        "{carrier} claims they tried to deliver order {order} on {weekday} but I was home all day.",
        "What's the tracking number for order {order}?",
        "I'm away until {day}, can you hold order {order} before it ships?",
        "The tracking page shows my {product} went to {city} instead of my town.",
        "Which carrier will bring my {product}, and can I choose a delivery slot?",
        "I paid {amount} for next-day delivery and order {order} still hasn't left your warehouse after {days}.",  # hard
        "I never got a tracking email for order {order}, where is the parcel now?",  # hard
    ],
    "technical": [
        "The app crashes on my {device} every time I open {feature}.",
        "I get {error} when I try to {action}.",
        "My {gadget} won't connect to Wi-Fi since the last update.",
        "The firmware update for my {gadget} is stuck at {pct}%.",
        "Notifications stopped working on my {device} after version {version}.",
        "How do I pair the {gadget} with my {device}?",
        "The {gadget} keeps dropping its Bluetooth connection every few minutes.",
        "Since version {version} your app drains my {device} battery.",
        "The page freezes whenever I {action} on my {device}.",
        "My {gadget} has a blinking red light and won't turn on.",
        "The companion app says the {gadget} is offline although it's plugged in.",
        "Search in the app only gives me {error}.",
        "The setup QR code for the {gadget} won't scan with my {device}.",
        "Dark mode makes the text unreadable on my {device}.",
        "Your website won't load in {browser}, I just get {error}.",
        "The {gadget} is stuck in a reboot loop after I reset it.",
        "Installing the app on my {device} fails with {error}.",
        "The {gadget} shows the wrong time even after a reset.",
        "Video from the {gadget} lags about {n} seconds behind on my {device}.",
        "The app won't open {feature} on my {device}, it closes straight away.",
        "I try to pay with my {payment} but the checkout button does nothing on my {device}.",  # hard
        "The download link for my invoice gives {error} in {browser}.",  # hard
    ],
    "account": [
        "I forgot my password and the reset email never arrives.",
        "How do I change the email address on my account?",
        "My account is locked after too many login attempts.",
        "Please delete my account and all of my data.",
        "I want to turn on two-factor authentication for my login.",
        "I lost my {device} and can't get the 2FA code to sign in.",
        "Can I merge my two accounts into one? I signed up twice by mistake.",
        "Someone signed in to my account from {city}, and it wasn't me.",
        "How can I change the display name on my profile?",
        "Please update the phone number saved in my profile.",
        "I'm getting emails for an account I never created.",
        "How do I stop the marketing emails? I can't find it in my profile.",
        "Can I add my partner as a second user on my {plan} account?",
        "My account says it's suspended and I don't know why.",
        "I'd like a copy of all the personal data you hold on me.",
        "I signed up with my old work email and can't access it any more.",
        "Can I switch my account language to {lang}?",
        "Sign in with Google stopped working for me, how else can I log in?",
        "My username still shows my old surname, can you change it?",
        "I want to log out of every device I've used since {month}.",
        "I can't log in to see my invoice for {month}, it says wrong password.",  # hard
        "Please close my account once order {order} has arrived.",  # hard
    ],
    "refund": [
        "I returned the {product} {days} ago, when will I get my money back?",
        "The {product} from order {order} arrived broken and I want a refund.",
        "The {product} isn't what I expected. How do I send it back and get my {amount} back?",
        "I cancelled order {order} before it shipped, please refund me.",
        "The refund of {amount} for order {order} still hasn't reached my {payment}.",
        "My {product} stopped working after {n} weeks. I want my money back.",
        "Can I get a refund for the {product}? It's still sealed.",
        "You refunded {amount} but I paid {amount2} for order {order}.",
        "How long does a refund to a {payment} usually take?",
        "I was promised a refund for the late delivery of order {order}.",
        "The {product} is the wrong size. I'd like to return it for a refund.",
        "Please refund the unused months of my yearly {plan} plan.",
        "The refund for my cancelled subscription never came through.",
        "Order {order} came {days} late, can you refund the shipping fee?",
        "I sent back the {product} with the return label, has my refund been processed?",
        "Your store credit is no use to me, please refund the {amount} to my {payment} instead.",
        "Two of the {product} sets were faulty, I'd like to return them for a refund.",
        "You said I'd get {amount} back for the damaged {product}. Where is it?",
        "The {product} broke on day one. No replacement, just refund me.",
        "I returned order {order} in {month} and I'm still waiting for the money.",
        "The {product} from order {order} arrived cracked. No replacement please, just my money back.",  # hard
        "I cancelled my {plan} subscription during the trial, please give back the {amount} you took.",  # hard
    ],
}

# Optional second sentences: context a real customer adds. Label-specific so they stay true.
DEMO_DETAILS: dict[str, list[str]] = {
    "billing": ["I've been a customer for {n} years.", "I checked my bank app this morning.",
                "My bank shows it as pending.", "I need it sorted for my expense report.",
                "I'm on the {plan} plan.", "The amount on the receipt doesn't match my bank."],
    "shipping": ["I need it for a birthday on {day}.", "The tracking link just says 'in transit'.",
                 "I ordered it {days} ago.", "Nobody left a card.", "I live in {city}.",
                 "It was paid with express shipping."],
    "technical": ["I already restarted it twice.", "I'm on version {version}.", "I tried reinstalling the app.",
                  "It worked fine until last week.", "This happens on my {device} too.",
                  "Clearing the cache didn't help."],
    "account": ["I still have access to my phone.", "I don't remember which email I used.",
                "This is urgent, I use it for work.", "I've checked my spam folder.",
                "I signed up in {month}.", "I'm the only one with the password."],
    "refund": ["I still have the receipt.", "I paid with my {payment}.", "Please confirm by email.",
               "This is the second time I'm asking.", "I've been a customer for {n} years.",
               "My bank says nothing has come in yet."],
}

OPENERS = {
    "polite": ["Hi,", "Hello,", "Good morning,", "Hi there,", "Hello team,", "Hi support,", "Dear support,"],
    "angry": ["This is ridiculous.", "Seriously?", "I'm fed up.", "Third time I'm writing.",
              "Unbelievable.", "Not happy at all.", "I'm losing patience."],
    "neutral": ["", "", "Quick question.", "Hey,", "Hi,"],
    "terse": [""],
}
CLOSERS = {
    "polite": ["Thanks!", "Thank you.", "Thanks in advance.", "Many thanks.", "Appreciate your help.",
               "Kind regards.", "Thanks a lot."],
    "angry": ["Fix this now.", "I want an answer today.", "Sort it out.", "Worst service ever.",
              "Respond ASAP.", "I expect better."],
    "neutral": ["", "Thanks.", "Cheers.", "Any update?", "Please advise."],
    "terse": [""],
}
KEEP_CAPITAL = {"I", "I'm", "I'd", "I've", "UPS", "DHL", "FedEx", "Royal"}
TONES = ("polite", "polite", "neutral", "neutral", "angry", "terse")
DEMO_COUNTS = {"billing": 82, "shipping": 82, "technical": 80, "account": 78, "refund": 78}


def _demo_message(rng: random.Random, label: str) -> str:
    tone = rng.choice(TONES)
    core_template = rng.choice(DEMO_CORES[label])
    core = _fill(rng, core_template, DEMO_SLOTS)
    opener = rng.choice(OPENERS[tone])
    if opener.endswith(",") and core.split()[0] not in KEEP_CAPITAL:
        core = core[0].lower() + core[1:]
    parts = [opener, core]
    if rng.random() < 0.4:
        detail = rng.choice(DEMO_DETAILS[label])
        # A detail reusing a slot of the core could contradict it ("since version 5.0 ... I'm on 4.2").
        if not set(re.findall(r"\{(\w+)\}", detail)) & set(re.findall(r"\{(\w+?)2?\}", core_template)):
            parts.append(_fill(rng, detail, DEMO_SLOTS))
    parts.append(rng.choice(CLOSERS[tone]))
    text = " ".join(p for p in parts if p)
    if tone == "terse":
        # Terse writers skip capitals and the final full stop.
        text = text[0].lower() + text[1:]
        text = text.rstrip(".")
    elif tone == "angry" and rng.random() < 0.3:
        text = text.rstrip(".") + "!!"
    return text


def make_demo(seed: int = 13) -> list[dict]:
    """Interleaved queues (so file order carries no label signal), no exact or near duplicates."""
    rng = random.Random(seed)
    pool, full = DedupPool(), ShinglePool()
    per_label: dict[str, list[str]] = {q: [] for q in QUEUES}
    for label in QUEUES:
        tries = 0
        while len(per_label[label]) < DEMO_COUNTS[label]:
            tries += 1
            if tries > 50_000:
                raise RuntimeError(f"could not generate enough distinct {label} messages")
            text = _demo_message(rng, label)
            whole = f"{ROUTING_INSTRUCTION}\n{text}\n{label}"
            if len(text.split()) <= 40 and pool.add(text) and full.add(whole):
                per_label[label].append(text)
    rows = [(label, text) for label in QUEUES for text in per_label[label]]
    rng.shuffle(rows)
    return [{"messages": [{"role": "system", "content": ROUTING_INSTRUCTION},
                          {"role": "user", "content": text},
                          {"role": "assistant", "content": label}]} for label, text in rows]


# ============================================================== support_replies: on-topic Nimbus agent

NIMBUS_SLOTS: dict[str, list[str] | Callable[[random.Random], str]] = {
    "device": ["Windows laptop", "Mac", "iPhone", "Android phone", "iPad", "Linux desktop", "work PC", "Chromebook"],
    "folder": ["Photos", "Tax 2025", "Thesis", "Client files", "Recipes", "Band rehearsals", "Invoices",
               "Wedding", "Garden project", "Scans", "Course notes", "Holiday 2024"],
    "filetype": ["PDF", "video", "spreadsheet", "RAW photo", "Word document", "slide deck", "ZIP archive"],
    "n": ["two", "three", "four", "five", "six"],
    "days": ["for two days", "since yesterday", "since the weekend", "for about a week", "since this morning"],
    "version": ["6.2", "6.3.1", "7.0", "7.1", "6.9"],
    "size": ["3 GB", "800 MB", "12 GB", "1.5 GB", "40 GB"],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December"],
    "plan": ["Plus", "Pro", "Family"],
}

# Facts the answers rely on, kept consistent across the dataset.
NIMBUS_PLANS = "Free has 5 GB, Plus has 200 GB for $2.99 a month, Pro has 2 TB for $9.99 a month, and Family shares 2 TB between up to five people for $14.99 a month"

# (topic, user question, agent answer body). Slots are shared between question and answer.
NIMBUS_PAIRS: list[tuple[str, str, str]] = [
    # --- sync
    ("sync", "My {folder} folder stopped syncing on my {device} {days}.",
     "Please open Nimbus on the {device}, check that the {folder} folder still has the green sync tick, and choose Pause then Resume sync from the menu. If it stays stuck, sign out of the app and back in; your files stay safe in the cloud while you do."),
    ("sync", "Files I save on my {device} take hours to show up on my other devices.",
     "Uploads can queue behind large files. In Nimbus on the {device}, open Activity to see what is still uploading, and make sure Limit upload speed is off in Settings > Network. Small files should then appear within a minute or two."),
    ("sync", "Nimbus says 'sync conflict' on a {filetype} in {folder}. What does that mean?",
     "A conflict happens when the same {filetype} was changed on two devices before they could sync. Nimbus keeps both: the second copy has 'conflicted copy' in its name. Open both, keep the version you want, and delete the other."),
    ("sync", "Can I choose which folders sync to my {device}? It's running out of space.",
     "Yes. In Nimbus on the {device}, go to Settings > Selective Sync and untick the folders you do not need locally. They stay in your cloud storage and remain available on the web and your other devices."),
    ("sync", "The Nimbus icon on my {device} is stuck on 'Indexing' {days}.",
     "Indexing can take a while after an update, especially with many small files. Please make sure you are on version {version} or later, then restart the app. If it is still indexing after an hour, send us the log from Help > Send diagnostics and we will take a look."),
    ("sync", "I deleted the {folder} folder on my {device} to save space and it vanished everywhere!",
     "Deleting a synced folder removes it from every device, but nothing is lost yet: deleted items stay in Trash for 30 days. On the web, open Trash, select {folder} and choose Restore. To free space on one device only, use Selective Sync instead of deleting."),
    ("sync", "Does Nimbus sync over mobile data on my {device}? My plan is limited.",
     "By default Nimbus only uploads over Wi-Fi on phones and tablets. You can check this in Settings > Uploads > Use mobile data, which should be switched off if you want to save your data allowance."),
    ("sync", "Changes to a {filetype} I edit on my {device} don't reach my laptop.",
     "Please check that the file is not open in another program on the laptop, since locked files wait until they are closed. Then look at Activity on the {device} to confirm the upload finished. If both look fine, restarting Nimbus on the laptop usually picks up the change."),
    ("sync", "After updating to version {version} my {device} shows every file as 'waiting to sync'.",
     "Version {version} rebuilds its file list after the update, so files show as waiting for a short while. Leave the {device} on and connected for about an hour. If nothing moves after that, choose Help > Repair sync, which rechecks every file without uploading them again."),
    # --- sharing
    ("sharing", "How do I share my {folder} folder with someone who doesn't use Nimbus?",
     "Right-click {folder} (or tap the three dots on mobile), choose Share > Create link, and send the link. People without a Nimbus account can view and download. You can set an expiry date or a password on the link from the same menu."),
    ("sharing", "I shared {folder} with {n} people by mistake. Can I undo that?",
     "Yes. Open {folder}, choose Share > Manage access, and remove the people who should not have it, or turn the link off entirely. They lose access straight away, and anything they already downloaded is outside Nimbus."),
    ("sharing", "My colleague says the link to my {filetype} shows 'access denied'.",
     "That usually means the link was set to specific people only. Open the {filetype}, choose Share > Manage access, and either add your colleague's address or switch the link to Anyone with the link. If the link has an expiry date, check that it has not passed."),
    ("sharing", "Can people I share {folder} with edit the files, or only view them?",
     "You decide. When you share {folder}, choose Can view or Can edit for each person; you can change it any time under Share > Manage access. Editors' changes sync to you, and you can roll back any file from its version history."),
    ("sharing", "Does a shared folder use up the other person's storage too?",
     "Only for the people who add it to their own Nimbus. A shared folder counts against the storage of everyone who joins it, so if {folder} is {size}, each member who adds it needs that much free space. Viewing through a link uses no storage."),
    ("sharing", "A shared folder from my friend disappeared from my {device}.",
     "The owner may have stopped sharing it or removed you, or the folder may be turned off in Selective Sync on the {device}. Check Shared with me on the web first; if it is listed there, turn it back on in Settings > Selective Sync."),
    ("sharing", "How can I see who opened the {filetype} I shared?",
     "On Pro and Family plans, open the {filetype} and choose Share > Activity to see views and downloads by date. On Free and Plus you can see who has access, but not when they opened it."),
    ("sharing", "Can I stop people from downloading a {filetype} I share by link?",
     "Yes, on Pro and Family. In Share > Link settings turn off Allow downloads; people can then preview the {filetype} in the browser but not save it. Bear in mind nobody can fully stop screenshots."),
    # --- plans
    ("plans", "What storage plans do you have? I'm on the free plan and nearly full.",
     "Here are the options: {plans}. You can upgrade from Settings > Plan, and the extra space is available straight away with nothing to reinstall."),
    ("plans", "If I downgrade from {plan} to Free, what happens to my files over 5 GB?",
     "Nothing is deleted. Your files stay readable and downloadable, but Nimbus stops syncing new files until you are under 5 GB. You can move or remove files at your own pace, or keep the {plan} plan until the end of the paid period."),
    ("plans", "Is the Family plan worth it for {n} people?",
     "For {n} people it is often the cheapest option: 2 TB shared for $14.99 a month, with each person keeping a private space. The owner can see how much each member uses but not their files."),
    ("plans", "I need about {size} more space for a project. Which plan fits?",
     "For that amount, Plus with 200 GB is usually enough; if your project grows past that, Pro gives 2 TB. For reference: {plans}. You can switch plans at any time."),
    ("plans", "Do you offer a student discount on the {plan} plan?",
     "Yes, students get 40% off Plus and Pro for up to four years. Sign up with your university email and verify it in Settings > Plan > Student discount, and the price changes from the next billing date."),
    ("plans", "What's the difference between Plus and Pro besides space?",
     "Pro adds 180 days of version history instead of 30, link passwords and expiry, download controls, and file activity. Plus covers most personal use. The full list is on the Plans page in Settings."),
    ("plans", "Can I try Pro before I pay for it?",
     "Yes, Pro has a 14-day free trial from Settings > Plan. You will not be charged if you cancel before it ends, and if you do nothing it becomes a paid Pro plan at $9.99 a month."),
    # --- billing
    ("billing", "I was charged twice for my {plan} plan this month.",
     "Sorry about that. A second charge is usually a pending authorisation that your bank releases within three to five working days. If both charges are still there after that, reply with the dates and I will have the duplicate refunded."),
    ("billing", "How do I get an invoice for my Nimbus payments in {month}?",
     "Every payment has an invoice under Settings > Plan > Billing history. Click the {month} payment and choose Download PDF. If you need a company name or VAT number on it, add them under Billing details first and the invoice updates."),
    ("billing", "My card payment for the {plan} plan failed. Will I lose my files?",
     "No, your files are safe. We retry the payment over the next 14 days and send a reminder by email. You can update your card under Settings > Plan > Payment method, and the payment is retried right away."),
    ("billing", "Can I switch my {plan} plan from monthly to yearly billing?",
     "Yes. Go to Settings > Plan and choose Switch to yearly; yearly billing is about two months cheaper. The unused part of this month is credited against the first yearly payment."),
    ("billing", "Why did my Nimbus bill go up in {month}?",
     "Prices are shown including local sales tax, so a change in your billing country or tax rate changes the total. You can compare invoices under Settings > Plan > Billing history; if the plan price itself looks wrong, reply with both invoice numbers and I will check."),
    ("billing", "How do I cancel my {plan} subscription?",
     "Go to Settings > Plan and choose Cancel subscription. You keep the {plan} features until the end of the period you have paid for, then the account moves to Free. Your files are not deleted."),
    ("billing", "Can I pay for Nimbus with PayPal instead of a card?",
     "Yes, PayPal works for monthly and yearly plans. Under Settings > Plan > Payment method choose PayPal and sign in to approve it; the next payment will use PayPal."),
    ("billing", "I cancelled my {plan} plan in {month} but I was still charged.",
     "I am sorry for the confusion. If the cancellation went through after the renewal date, the charge covers the new period; if it went through before, you are owed a refund. Reply with the date you cancelled and I will check and refund it if it was after the cancellation."),
    # --- account recovery
    ("account", "I forgot my Nimbus password and the reset email isn't arriving.",
     "Please check the spam folder and wait about ten minutes, as reset emails can be delayed. Make sure you enter the address you signed up with. If nothing arrives, use Sign in > Trouble signing in > Recover with phone to get a code by text instead."),
    ("account", "I lost my {device} and can't get my two-factor code.",
     "You can sign in with one of the backup codes you saved when you turned on two-factor authentication. If you do not have them, choose Trouble signing in > Lost my device; we verify your identity by email, which takes up to 48 hours for your security."),
    ("account", "Someone else may have logged into my Nimbus account.",
     "Please change your password right away and choose Sign out of all devices in Settings > Security. Then look at Recent activity on the same page: anything you do not recognise can be reported there, and we will review it with you."),
    ("account", "How do I change the email address on my Nimbus account?",
     "Go to Settings > Account > Email, enter the new address and confirm it from the message we send there. Until you confirm, the old address keeps working, so you never lose access."),
    ("account", "My account is locked after too many sign-in attempts.",
     "For your security, the account unlocks automatically after 30 minutes. After that, sign in with your current password, or use Trouble signing in to reset it if you are not sure of it."),
    ("account", "I have two Nimbus accounts. Can I merge them?",
     "Accounts cannot be merged directly, but you can move everything into one: share the folders from the old account with the new one, add them there, then copy the files in. Once done, you can close the old account from Settings > Account."),
    ("account", "How do I delete my Nimbus account and all my files?",
     "Go to Settings > Account > Delete account. If you have a paid plan, cancel it first. Your files are removed for good after 30 days, so download anything you want to keep before then."),
    ("account", "Nimbus keeps asking me to sign in again on my {device}.",
     "That usually means the app cannot save its sign-in token. Please update to version {version} or later, and make sure the {device}'s date and time are set automatically. If it keeps happening, signing out and in once clears the old token."),
    # --- files: trash, versions, offline, uploads
    ("files", "I overwrote a {filetype} in {folder} by mistake. Can I get the old one back?",
     "Yes. Open {folder} on the web, right-click the {filetype} and choose Version history. Pick the version from before the change and click Restore; the current version is kept in the history too."),
    ("files", "Where do deleted files go in Nimbus?",
     "Deleted files stay in Trash for 30 days on Free and Plus, and 180 days on Pro and Family. On the web, open Trash, select the files and choose Restore to put them back where they were."),
    ("files", "Can I open my {folder} files on my {device} without internet?",
     "Yes. In the Nimbus app on the {device}, open {folder}, tap the three dots and choose Make available offline. The files download and stay in sync whenever you are back online."),
    ("files", "Uploading a {size} {filetype} from my {device} keeps failing halfway.",
     "Large uploads can fail if the connection drops or the {device} goes to sleep. Please keep the app open and the device plugged in, and use Wi-Fi if you can. Nimbus resumes from where it stopped, so you do not need to start again."),
    ("files", "Is there a size limit for a single file in Nimbus?",
     "Single files can be up to 50 GB when uploaded with the desktop or mobile app, and up to 5 GB through the web browser. For a larger {filetype}, the desktop app is the way to go."),
    ("files", "My photos from my {device} aren't being backed up to Nimbus any more.",
     "Please check that Camera uploads is on in the app's Settings, and that Nimbus is allowed to access photos and run in the background on the {device}. Battery saver modes can pause uploads, so it helps to open the app once while charging."),
    ("files", "How can I find a {filetype} I saved in Nimbus last {month}?",
     "Use the search bar on the web or in the app and filter by Type > {filetype} and by date. Search also looks inside PDFs and documents, so a word from the content works too."),
]

NIMBUS_USER_OPENERS = ["", "", "Hi,", "Hello,", "Hi there,", "Quick question:", "Hey Nimbus team,", "Good afternoon,",
                       "Help please.", "I'm really stressed about this.", "Not sure who to ask, but"]
NIMBUS_USER_CLOSERS = ["", "", "Thanks!", "Thank you.", "Any ideas?", "This is urgent.", "Thanks in advance.",
                       "Please help.", "I need this sorted today."]
# Questions get a neutral opening line, reported problems an empathetic one.
NIMBUS_ACKS = {
    "question": ["Thanks for getting in touch.", "Happy to help with this.", "Good question.",
                 "Thanks for asking.", "Let me help you with that.", "Thanks for reaching out."],
    "problem": ["Sorry you're running into this; let's sort it out.", "I understand how frustrating that is.",
                "Sorry about the trouble, I'll help you fix it.", "Thanks for letting us know, and sorry for the hassle.",
                "I understand this is worrying, so let's go through it together."],
}
NIMBUS_CLOSINGS = ["", "If anything is still unclear, just reply here and I'll help.",
                   "Let me know how it goes.", "I'm here if you need anything else.",
                   "If that doesn't solve it, reply with what you see and we'll look further.",
                   "Have a good day."]

FAKE_EMAILS = ["jane.doe@example.com", "sam.lee@example.org", "p.novak@example.net", "alex.rivera@example.com",
               "mika.tanaka@example.org", "j.okafor@example.net"]
# Fictional numbers: the US 555-01xx range and the UK Ofcom drama ranges.
FAKE_PHONES = ["+1 202 555 0147", "(415) 555-0132", "+44 20 7946 0958", "020 7946 0321", "+1 312 555 0186"]
# Documented payment test numbers (Luhn-valid, never real cards).
TEST_CARDS = ["4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881", "6011 1111 1111 1117",
              "3782 822463 10005"]
PII_SENTENCES = {
    "email": (["My account email is {email}.", "I signed up as {email}.", "You can reply to {email}."],
              "I've noted the address you gave, so there's no need to send it again."),
    "phone": (["You can call me on {phone}.", "My number is {phone} if that helps.", "Text me at {phone}."],
              "Everything can be done here in chat, so we won't need to call you."),
    "card": (["My card number is {card}, can you check it?", "The card I used is {card}."],
             "For your safety, please don't share card numbers in chat; I've asked for it to be removed from this conversation."),
}
SUPPORT_COUNT = 200
SUPPORT_SYSTEM = None  # records carry no system turn: the `system` baseline adds one from the goal


def _support_record(rng: random.Random) -> tuple[str, str]:
    topic, question, answer = rng.choice(NIMBUS_PAIRS)
    chosen: dict[str, str] = {"plans": NIMBUS_PLANS}
    q = _fill(rng, question, NIMBUS_SLOTS, chosen)
    body = _fill(rng, answer, NIMBUS_SLOTS, chosen)
    opener, closer = rng.choice(NIMBUS_USER_OPENERS), rng.choice(NIMBUS_USER_CLOSERS)
    if opener.endswith((",", "but")) and not q.startswith(("I ", "I'", "Nimbus", "Version")):
        q = q[0].lower() + q[1:]
    user_parts = [opener, q]
    note = ""
    r = rng.random()
    if r < 0.2:  # about a quarter of the messages carry planted, fake PII
        kind = "card" if topic in ("billing", "plans") and rng.random() < 0.6 else rng.choice(["email", "email", "phone"])
        templates, note = PII_SENTENCES[kind]
        user_parts.append(_fill(rng, rng.choice(templates),
                                {"email": FAKE_EMAILS, "phone": FAKE_PHONES, "card": TEST_CARDS}))
    user_parts.append(closer)
    reply_parts = [rng.choice(NIMBUS_ACKS["question" if question.rstrip().endswith("?") else "problem"]), body, note, rng.choice(NIMBUS_CLOSINGS)]
    return " ".join(p for p in user_parts if p), " ".join(p for p in reply_parts if p)


def make_support(seed: int = 29) -> list[dict]:
    rng = random.Random(seed)
    pool = DedupPool()
    rows: list[dict] = []
    tries = 0
    while len(rows) < SUPPORT_COUNT:
        tries += 1
        if tries > 50_000:
            raise RuntimeError("could not generate enough distinct support conversations")
        user, reply = _support_record(rng)
        if pool.add(user + " " + reply):
            rows.append({"messages": [{"role": "user", "content": user},
                                      {"role": "assistant", "content": reply}]})
    return rows


# ============================================================== python_tasks: code with error handling

# Placeholders here are <<name>> so that Python's own braces (dicts, f-strings) stay intact.
PY_SLOTS: dict[str, list[str] | Callable[[random.Random], str]] = {
    "path": ["config.json", "settings.json", "data/users.json", "app.json", "inventory.json"],
    "textfile": ["notes.txt", "README.txt", "log.txt", "report.txt", "input.txt"],
    "csvfile": ["sales.csv", "users.csv", "orders.csv", "scores.csv", "products.csv"],
    "url": ["https://api.example.com/users", "https://api.example.com/orders", "https://example.org/api/status",
            "https://api.example.net/v1/items", "https://example.com/api/weather"],
    "key": ["name", "email", "price", "status", "id", "city"],
    "envvar": ["PORT", "MAX_WORKERS", "TIMEOUT", "BATCH_SIZE", "RETRIES"],
    "default": ["0", "1", "8", "30", "100"],
    "thing": ["age", "quantity", "year", "page number", "score"],
    "datefmt": ["%Y-%m-%d", "%d/%m/%Y", "%m-%d-%Y", "%d.%m.%Y"],
    "cmd": ['["git", "status"]', '["ls", "-l"]', '["python", "--version"]', '["df", "-h"]', '["uname", "-a"]'],
    "host": ["localhost", "db.internal", "example.com", "cache.example.net"],
    "port": ["5432", "6379", "8080", "443", "22"],
    "table": ["users", "orders", "products", "events", "books"],
    "attempts": ["3", "4", "5"],
}

PY_VERBS = ["Write a Python function", "Write a function", "Implement a Python function", "Create a function",
            "Please write a Python function", "I need a Python function"]
PY_ENDINGS = ["", "", " Keep it short.", " Use only the standard library where possible.", " Add a docstring.",
              " It should not crash on bad input."]

# (function names, task description, code). The task follows "<verb> `fn(args)` that ...".
PY_FAMILIES: list[tuple[list[str], str, str]] = [
    (["read_text", "load_text", "read_file"], "`<<fn>>(path)` that returns the contents of a text file such as <<textfile>>, or None if it cannot be read.",
     '''def <<fn>>(path):
    """Return the text in ``path``, or None if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        print(f"{path} does not exist")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"could not read {path}: {exc}")
    return None
'''),
    (["load_config", "read_settings", "load_json_file"], "`<<fn>>(path)` that loads a JSON file like <<path>> and returns a dict (empty if the file is missing or invalid).",
     '''import json


def <<fn>>(path):
    """Load a JSON object from ``path``; an empty dict when missing or invalid."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        print(f"{path} is not valid JSON (line {exc.lineno}): {exc.msg}")
        return {}
    return data if isinstance(data, dict) else {}
'''),
    (["to_int", "parse_int", "safe_int"], "`<<fn>>(text, default=<<default>>)` that converts a string to an int and returns the default when it is not a number.",
     '''def <<fn>>(text, default=<<default>>):
    """``int(text)``, or ``default`` when the text is not a whole number."""
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return default
'''),
    (["fetch_json", "get_json", "fetch_data"], "`<<fn>>(url)` that fetches JSON from an API such as <<url>> with requests and returns the parsed data, or None on any network or HTTP error.",
     '''import requests


def <<fn>>(url):
    """GET ``url`` and return its JSON body, or None on failure."""
    try:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        return response.json()
    except requests.exceptions.HTTPError as exc:
        print(f"HTTP error from {url}: {exc.response.status_code}")
    except requests.exceptions.RequestException as exc:
        print(f"request to {url} failed: {exc}")
    except ValueError:
        print(f"{url} did not return JSON")
    return None
'''),
    (["safe_divide", "divide", "ratio"], "`<<fn>>(a, b)` that divides two numbers and returns None instead of failing when b is zero or an input is not a number.",
     '''def <<fn>>(a, b):
    """``a / b``, or None when b is zero or an input is not numeric."""
    try:
        return a / b
    except ZeroDivisionError:
        return None
    except TypeError:
        return None
'''),
    (["read_rows", "load_csv", "read_csv_rows"], "`<<fn>>(path)` that reads a CSV file like <<csvfile>> into a list of dicts using the csv module.",
     '''import csv


def <<fn>>(path):
    """Rows of the CSV file at ``path`` as dicts; an empty list if it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        print(f"no such file: {path}")
    except csv.Error as exc:
        print(f"malformed CSV in {path}: {exc}")
    return []
'''),
    (["save_json", "write_json", "dump_json"], "`<<fn>>(path, data)` that writes data to a JSON file and returns True on success, False otherwise.",
     '''import json


def <<fn>>(path, data):
    """Write ``data`` as JSON to ``path``; True on success."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        return True
    except TypeError as exc:
        print(f"data is not JSON serialisable: {exc}")
    except OSError as exc:
        print(f"could not write {path}: {exc}")
    return False
'''),
    (["env_int", "get_int_setting", "read_env_int"], "`<<fn>>(name, default)` that reads an integer setting such as <<envvar>> from an environment variable and falls back to the default if it is unset or not an integer.",
     '''import os


def <<fn>>(name, default):
    """Integer value of environment variable ``name``, or ``default``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        print(f"{name}={raw!r} is not an integer; using {default}")
        return default
'''),
    (["parse_date", "to_date", "read_date"], "`<<fn>>(text)` that parses a date in the format <<datefmt>> and returns a date object, or None if the text is not a valid date.",
     '''from datetime import datetime


def <<fn>>(text):
    """Parse ``text`` as <<datefmt>>; None when it is not a valid date."""
    try:
        return datetime.strptime(text.strip(), "<<datefmt>>").date()
    except (AttributeError, ValueError):
        return None
'''),
    (["count_lines", "line_count", "num_lines"], "`<<fn>>(path)` that counts the lines in a file like <<textfile>> and returns 0 if the file cannot be opened.",
     '''def <<fn>>(path):
    """Number of lines in ``path``; 0 if it cannot be opened."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return sum(1 for _ in fh)
    except OSError as exc:
        print(f"cannot open {path}: {exc}")
        return 0
'''),
    (["download", "download_file", "save_url"], "`<<fn>>(url, dest)` that downloads a file from a URL such as <<url>> to a local path with requests, streaming it, and returns True on success.",
     '''import requests


def <<fn>>(url, dest):
    """Stream ``url`` into the file ``dest``; True on success."""
    try:
        with requests.get(url, stream=True, timeout=30) as response:
            response.raise_for_status()
            with open(dest, "wb") as fh:
                for chunk in response.iter_content(chunk_size=65536):
                    fh.write(chunk)
        return True
    except requests.exceptions.RequestException as exc:
        print(f"download failed: {exc}")
    except OSError as exc:
        print(f"cannot write {dest}: {exc}")
    return False
'''),
    (["query_rows", "fetch_rows", "select_all"], "`<<fn>>(db_path)` that returns all rows of the <<table>> table from an SQLite database, or an empty list on a database error.",
     '''import sqlite3


def <<fn>>(db_path):
    """All rows of the <<table>> table, or [] when the query fails."""
    conn = None
    try:
        conn = sqlite3.connect(db_path)
        return conn.execute("SELECT * FROM <<table>>").fetchall()
    except sqlite3.Error as exc:
        print(f"database error: {exc}")
        return []
    finally:
        if conn is not None:
            conn.close()
'''),
    (["parse_numbers", "to_floats", "numbers_from_text"], "`<<fn>>(text)` that turns a comma-separated string like '1.5, 2, x' into a list of floats, skipping items that are not numbers.",
     '''def <<fn>>(text):
    """Floats from a comma-separated string; items that are not numbers are skipped."""
    numbers = []
    for item in text.split(","):
        try:
            numbers.append(float(item))
        except ValueError:
            continue
    return numbers
'''),
    (["get_nested", "dig", "lookup"], "`<<fn>>(data, *keys)` that follows keys through nested dicts (for example 'user' then '<<key>>') and returns None if any key is missing.",
     '''def <<fn>>(data, *keys):
    """``data[k1][k2]...``, or None when a key is missing or a value is not a dict."""
    current = data
    try:
        for key in keys:
            current = current[key]
    except (KeyError, TypeError, IndexError):
        return None
    return current
'''),
    (["run_command", "run_cmd", "check_output"], "`<<fn>>(cmd)` that runs a shell command such as <<cmd>> with subprocess and returns its output, or None if it fails or the program does not exist.",
     '''import subprocess


def <<fn>>(cmd):
    """Output of ``cmd`` (a list of arguments), or None if it fails."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
        return result.stdout
    except FileNotFoundError:
        print(f"program not found: {cmd[0]}")
    except subprocess.CalledProcessError as exc:
        print(f"{cmd[0]} exited with {exc.returncode}: {exc.stderr.strip()}")
    except subprocess.TimeoutExpired:
        print(f"{cmd[0]} timed out")
    return None
'''),
    (["post_json", "send_payload", "create_item"], "`<<fn>>(url, payload)` that POSTs a JSON payload to an endpoint such as <<url>> with requests and returns the response JSON, raising a clear RuntimeError on failure.",
     '''import requests


def <<fn>>(url, payload):
    """POST ``payload`` as JSON; return the decoded reply."""
    try:
        response = requests.post(url, json=payload, timeout=10)
        response.raise_for_status()
    except requests.exceptions.RequestException as exc:
        raise RuntimeError(f"POST to {url} failed: {exc}") from exc
    try:
        return response.json()
    except ValueError as exc:
        raise RuntimeError(f"{url} replied with something that is not JSON") from exc
'''),
    (["ask_number", "prompt_int", "read_number"], "`<<fn>>(question)` that keeps asking the user for their <<thing>> with input() until they type a valid whole number, then returns it.",
     '''def <<fn>>(question):
    """Ask until the answer is a whole number; return it."""
    while True:
        answer = input(question)
        try:
            return int(answer)
        except ValueError:
            print(f"{answer!r} is not a whole number, please try again.")
'''),
    (["copy_file", "backup_file", "safe_copy"], "`<<fn>>(src, dst)` that copies a file with shutil and reports a missing source or a permission problem instead of crashing.",
     '''import shutil


def <<fn>>(src, dst):
    """Copy ``src`` to ``dst``; True on success."""
    try:
        shutil.copy2(src, dst)
        return True
    except FileNotFoundError:
        print(f"source file not found: {src}")
    except PermissionError:
        print(f"permission denied copying to {dst}")
    except OSError as exc:
        print(f"copy failed: {exc}")
    return False
'''),
    (["decode_b64", "from_base64", "b64_to_text"], "`<<fn>>(data)` that decodes a base64 string to text and returns None if the input is not valid base64 or not UTF-8.",
     '''import base64
import binascii


def <<fn>>(data):
    """Decode base64 ``data`` to text; None when it is not valid."""
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
'''),
    (["remove_file", "delete_if_exists", "safe_delete"], "`<<fn>>(path)` that deletes a file such as <<textfile>> and does nothing if it is already gone.",
     '''import os


def <<fn>>(path):
    """Delete ``path``; a missing file is not an error."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        print(f"could not delete {path}: {exc}")
'''),
    (["get_with_retry", "fetch_retry", "robust_get"], "`<<fn>>(url, attempts=<<attempts>>)` that GETs a URL like <<url>> with requests, retrying on network errors with a growing pause, and raises after the last attempt.",
     '''import time

import requests


def <<fn>>(url, attempts=<<attempts>>):
    """GET ``url``, retrying network errors with backoff."""
    for attempt in range(1, attempts + 1):
        try:
            response = requests.get(url, timeout=10)
            response.raise_for_status()
            return response
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            if attempt == attempts:
                raise RuntimeError(f"{url} failed after {attempts} attempts") from exc
            time.sleep(2 ** attempt)
'''),
    (["read_gzip", "load_gz_text", "gunzip_text"], "`<<fn>>(path)` that reads a gzip-compressed text file and returns its text, or None if the file is missing or corrupt.",
     '''import gzip


def <<fn>>(path):
    """Text of a gzip file, or None when it is missing or corrupt."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        print(f"{path} not found")
    except (OSError, EOFError) as exc:
        print(f"{path} is not a valid gzip file: {exc}")
    return None
'''),
    (["average_from_file", "mean_of_file", "file_average"], "`<<fn>>(path)` that reads one number per line from a file and returns their average, or None if the file is missing, empty or has a bad line.",
     '''import statistics


def <<fn>>(path):
    """Mean of the numbers in ``path`` (one per line), or None."""
    try:
        with open(path, encoding="utf-8") as fh:
            values = [float(line) for line in fh if line.strip()]
        return statistics.mean(values)
    except FileNotFoundError:
        print(f"{path} not found")
    except ValueError as exc:
        print(f"bad number in {path}: {exc}")
    except statistics.StatisticsError:
        print(f"{path} has no numbers")
    return None
'''),
    (["port_open", "is_reachable", "can_connect"], "`<<fn>>(host, port)` that checks whether a TCP port such as <<host>>:<<port>> accepts connections, returning True or False.",
     '''import socket


def <<fn>>(host, port, timeout=3.0):
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False
'''),
    (["extract_zip", "unzip", "unpack_archive"], "`<<fn>>(zip_path, dest)` that extracts a zip archive to a folder and returns the list of extracted names, or an empty list if the archive is invalid.",
     '''import zipfile


def <<fn>>(zip_path, dest):
    """Extract ``zip_path`` into ``dest``; return the names extracted."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(dest)
            return archive.namelist()
    except FileNotFoundError:
        print(f"{zip_path} not found")
    except zipfile.BadZipFile:
        print(f"{zip_path} is not a valid zip file")
    return []
'''),
    (["parse_json_text", "loads_or_none", "decode_json"], "`<<fn>>(text)` that parses a JSON string and returns the value, or None with a message saying where the JSON is broken.",
     '''import json


def <<fn>>(text):
    """Decoded JSON, or None when ``text`` is not valid JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    except TypeError:
        print("expected a string")
    return None
'''),
    (["field_values", "collect_field", "pluck"], "`<<fn>>(records, field)` that returns the '<<key>>'-style field from each dict in a list, skipping records that do not have it.",
     '''def <<fn>>(records, field):
    """Values of ``field`` in each record; records without it are skipped."""
    values = []
    for record in records:
        try:
            values.append(record[field])
        except (KeyError, TypeError):
            continue
    return values
'''),
    (["make_dir", "ensure_folder", "create_output_dir"], "`<<fn>>(path)` that creates a folder (and its parents) for output files and returns False if it cannot be created.",
     '''import os


def <<fn>>(path):
    """Create ``path`` with its parents; False when that is not possible."""
    try:
        os.makedirs(path, exist_ok=True)
        return True
    except FileExistsError:
        print(f"{path} exists and is not a folder")
    except PermissionError:
        print(f"no permission to create {path}")
    return False
'''),
    (["price_total", "order_total", "sum_prices"], "`<<fn>>(items)` that sums the 'price' of each item dict, treating missing or non-numeric prices as errors to report, not crash on.",
     '''def <<fn>>(items):
    """Sum of item prices; items with a missing or bad price are reported and skipped."""
    total = 0.0
    for i, item in enumerate(items):
        try:
            total += float(item["price"])
        except KeyError:
            print(f"item {i} has no price")
        except (TypeError, ValueError):
            print(f"item {i} has an invalid price: {item.get('price')!r}")
    return total
'''),
    (["read_yaml", "load_yaml_config", "yaml_settings"], "`<<fn>>(path)` that loads a YAML settings file with PyYAML and returns a dict, reporting syntax errors with their line.",
     '''import yaml


def <<fn>>(path):
    """Settings from a YAML file as a dict; {} on error."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        print(f"{path} not found")
        return {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        print(f"invalid YAML in {path}{where}")
        return {}
    return data or {}
'''),
]

PY_NOTES = [
    "", "The `except` clauses name the specific errors this code can raise, so real bugs are not hidden.",
    "Only the expected errors are caught; anything else still surfaces.",
    "Catching the narrow exception types keeps unexpected problems visible.",
    "The error handling keeps the caller from crashing on bad input.",
]
PY_COUNT = 150


def _py_record(rng: random.Random) -> tuple[str, str]:
    names, task, code = rng.choice(PY_FAMILIES)
    chosen: dict[str, str] = {"fn": rng.choice(names)}
    angle = r"<<(\w+)>>"
    prompt = f"{rng.choice(PY_VERBS)} {_fill(rng, task, PY_SLOTS, chosen, angle)}{rng.choice(PY_ENDINGS)}"
    body = _fill(rng, code, PY_SLOTS, chosen, angle)
    note = rng.choice(PY_NOTES)
    return prompt, f"```python\n{body}```" + (f"\n{note}" if note else "")


def make_python(seed: int = 31) -> list[dict]:
    rng = random.Random(seed)
    seen: set[str] = set()
    full = ShinglePool()
    rows: list[dict] = []
    tries = 0
    while len(rows) < PY_COUNT:
        tries += 1
        if tries > 50_000:
            raise RuntimeError("could not generate enough distinct Python tasks")
        prompt, completion = _py_record(rng)
        # Prompts must differ; the same function may legitimately be asked for twice in other words.
        if prompt not in seen and full.add(f"{prompt}\n{completion}"):
            seen.add(prompt)
            rows.append({"prompt": prompt, "completion": completion})
    return rows


# ============================================================== command line

DATASETS: dict[str, Callable[[], list[dict]]] = {
    "demo.jsonl": make_demo,
    "support_replies.jsonl": make_support,
    "python_tasks.jsonl": make_python,
}


def write_all(out: Path) -> dict[str, int]:
    """Write every dataset into ``out``; return the number of records per file."""
    out.mkdir(parents=True, exist_ok=True)
    return {name: _write_jsonl(out / name, make()) for name, make in DATASETS.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: data/)")
    args = parser.parse_args(argv)
    for name, n in write_all(args.out).items():
        print(f"wrote {n:4d} records to {args.out / name}")


if __name__ == "__main__":
    main()
