"""Regenerate graphcraft/guards/data/pii_set.jsonl, the labelled set benchmarks/pii.py scores.

Templated sentences filled with values whose offsets are known exactly (valid Luhn cards in
several groupings, IBANs with a correct mod-97 check for 16 countries, SSNs obeying the SSA
rules, valid mobile numbers of 19 countries in international, national and E.164 formats, IPv4
and IPv6 full and compressed, names and places), Luhn-invalid numbers and other number-like
text labelled as nothing, then hand-written harder cases and hard negatives. Seeded: the same
file every time. Half of the examples are the train split (used when choosing recognizers),
half the test split (the numbers to report).

    python benchmarks/make_pii_set.py
"""

import ipaddress
import json
import random
import re
from pathlib import Path

import phonenumbers as pn

OUT = Path(__file__).resolve().parent.parent / "graphcraft" / "guards" / "data" / "pii_set.jsonl"

rng = random.Random(1313)


def luhn_digit(body):
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d)
        if i % 2 == 0:
            n *= 2
            n -= 9 if n > 9 else 0
        total += n
    return str((10 - total % 10) % 10)


def card(prefix, length, groups, sep):
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    num = body + luhn_digit(body)
    return fmt_groups(num, groups, sep)


def bad_card(prefix, length, groups, sep):
    good = card(prefix, length, [length], "")
    last = str((int(good[-1]) + rng.randint(1, 9)) % 10)
    return fmt_groups(good[:-1] + last, groups, sep)


def fmt_groups(num, groups, sep):
    out, i = [], 0
    for g in groups:
        out.append(num[i : i + g])
        i += g
    return sep.join(out)


IBAN_LAYOUT = {
    "DE": "18n",
    "GB": "4a14n",
    "FR": "23c",
    "ES": "20n",
    "NL": "4a10n",
    "IT": "1a22c",
    "BE": "12n",
    "CH": "17c",
    "AT": "16n",
    "PL": "24n",
    "IE": "4a14n",
    "PT": "21n",
    "SE": "20n",
    "DK": "14n",
    "NO": "11n",
    "FI": "14n",
}


def bban(layout):
    out = ""
    for n, kind in re.findall(r"(\d+)([anc])", layout):
        chars = {"a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "n": "0123456789", "c": "0123456789"}[kind]
        out += "".join(rng.choice(chars) for _ in range(int(n)))
    return out


def iban(country, spaced):
    b = bban(IBAN_LAYOUT[country])
    digits = "".join(str(int(c, 36)) for c in b + country + "00")
    check = 98 - int(digits) % 97
    value = f"{country}{check:02d}{b}"
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if spaced else value


def ssn(sep):
    while True:
        a = rng.randint(1, 899)
        if a != 666:
            break
    return f"{a:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


REGIONS = [
    "US",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "JP",
    "IN",
    "BR",
    "AU",
    "CA",
    "MX",
    "ZA",
    "SE",
    "CH",
    "IE",
    "PL",
    "SG",
]


def phone(region, style):
    ex = pn.example_number_for_type(region, pn.PhoneNumberType.MOBILE)
    for _ in range(200):
        nat = str(ex.national_number)
        nat = nat[:-4] + "".join(rng.choice("0123456789") for _ in range(4))
        num = pn.parse(f"+{ex.country_code}{nat}")
        if pn.is_valid_number(num):
            break
    fmt = {
        "intl": pn.PhoneNumberFormat.INTERNATIONAL,
        "nat": pn.PhoneNumberFormat.NATIONAL,
        "e164": pn.PhoneNumberFormat.E164,
    }[style]
    s = pn.format_number(num, fmt)
    if style == "intl" and region == "US" and rng.random() < 0.5:
        s = s.replace("-", ".").replace(" ", ".")
    return s


def ipv4():
    return str(ipaddress.IPv4Address(rng.randint(0x0B000000, 0xDF000000)))


def ipv6(compressed):
    a = ipaddress.IPv6Address(rng.getrandbits(128) & ~(0xFFFF << 48) if compressed else rng.getrandbits(128))
    if compressed:
        a = ipaddress.IPv6Address(int(a) & ((1 << 128) - (1 << 80)) | rng.getrandbits(16))
        return a.compressed
    return a.exploded


FIRST = [
    "Jane",
    "Oliver",
    "Amelia",
    "Mohammed",
    "Priya",
    "Carlos",
    "Sophie",
    "Hiroshi",
    "Fatima",
    "Lukas",
    "Chloe",
    "David",
    "Aisha",
    "Mateo",
    "Emma",
    "Nikolai",
    "Grace",
    "Samuel",
    "Ingrid",
    "Rahul",
    "Laura",
    "Thomas",
    "Anna",
    "Peter",
]
LAST = [
    "Doe",
    "Smith",
    "Okafor",
    "Fernandez",
    "Nakamura",
    "Schneider",
    "Dubois",
    "Patel",
    "Kowalski",
    "Johnson",
    "Andersson",
    "Rossi",
    "Murphy",
    "Haddad",
    "Novak",
    "Brown",
    "Williams",
    "Garcia",
    "Miller",
    "Wilson",
]
PLACES = [
    "London",
    "Paris",
    "Berlin",
    "Madrid",
    "Chicago",
    "Toronto",
    "Mumbai",
    "Sydney",
    "Tokyo",
    "Dublin",
    "Lisbon",
    "Boston",
    "Seattle",
    "Rome",
    "Vienna",
    "Nairobi",
    "Texas",
    "California",
    "Germany",
    "Canada",
    "Brazil",
    "France",
    "Manchester",
    "Oslo",
]


def person():
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def email():
    f, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower()
    local = rng.choice([f"{f}.{last}", f"{f[0]}{last}", f"{f}_{last}{rng.randint(1, 99)}", f"{f}+news", f"{last}.{f}"])
    dom = rng.choice(
        [
            "example.com",
            "mail.example.org",
            "corp.example.co.uk",
            "uni-example.edu",
            "example.de",
            "post.example.fr",
            "example.io",
            "inbox.example.com.au",
        ]
    )
    return f"{local}@{dom}"


TEMPLATES = {
    "EMAIL_ADDRESS": [
        "Please write to {EMAIL_ADDRESS} before Friday.",
        "Contact: {EMAIL_ADDRESS}",
        "Forwarded from <{EMAIL_ADDRESS}> yesterday.",
        "Send the invoice to {EMAIL_ADDRESS}; cc the team.",
        "Her address ({EMAIL_ADDRESS}) bounced twice.",
    ],
    "PHONE_NUMBER": [
        "Call me on {PHONE_NUMBER} after 6pm.",
        "Tel: {PHONE_NUMBER}",
        "Reach the depot at {PHONE_NUMBER}, ask for stores.",
        "Mobile {PHONE_NUMBER} (WhatsApp too).",
        "If urgent, ring {PHONE_NUMBER} or leave a message.",
    ],
    "US_SSN": [
        "SSN: {US_SSN}",
        "His social security number is {US_SSN}.",
        "Applicant SSN {US_SSN} was verified.",
        "Please confirm the social security no. {US_SSN} on file.",
    ],
    "CREDIT_CARD": [
        "Charge card {CREDIT_CARD} for the deposit.",
        "Visa ending... no, the full number is {CREDIT_CARD}.",
        "Payment: {CREDIT_CARD}, exp 09/27.",
        "Card number {CREDIT_CARD} was declined.",
    ],
    "IBAN_CODE": [
        "Transfer the rent to {IBAN_CODE}.",
        "IBAN: {IBAN_CODE}",
        "Please pay into account {IBAN_CODE} by the 5th.",
        "Refund goes to {IBAN_CODE} (the old account is closed).",
    ],
    "IP_ADDRESS": [
        "Login from {IP_ADDRESS} was blocked.",
        "The server at {IP_ADDRESS} stopped responding.",
        "Requests came from {IP_ADDRESS} overnight.",
        "Whitelist {IP_ADDRESS} on the firewall.",
    ],
    "PERSON": [
        "{PERSON} signed the contract.",
        "Yesterday I met {PERSON} at the conference.",
        "The report was written by {PERSON}.",
        "Please ask {PERSON} about the budget.",
    ],
    "LOCATION": [
        "We are opening a new office in {LOCATION}.",
        "She grew up in {LOCATION} and studied there.",
        "The shipment left {LOCATION} on Monday.",
    ],
}
MIXED = [
    "{PERSON} ({EMAIL_ADDRESS}) called from {PHONE_NUMBER} about the order.",
    "{PERSON} lives in {LOCATION}; his IBAN is {IBAN_CODE}.",
    "Customer {PERSON}, SSN {US_SSN}, card {CREDIT_CARD}.",
    "Admin {PERSON} logged in from {IP_ADDRESS} while travelling in {LOCATION}.",
    "Reply to {EMAIL_ADDRESS} or phone {PHONE_NUMBER}.",
    "Wire to {IBAN_CODE} and email the receipt to {EMAIL_ADDRESS}.",
]


def value(kind, i):
    if kind == "EMAIL_ADDRESS":
        return email()
    if kind == "PHONE_NUMBER":
        return phone(REGIONS[i % len(REGIONS)], ["intl", "nat", "intl", "e164"][i % 4])
    if kind == "US_SSN":
        return ssn(["-", "-", " ", "-"][i % 4])
    if kind == "CREDIT_CARD":
        kinds = [
            ("4", 16, [4, 4, 4, 4], " "),
            ("51", 16, [4, 4, 4, 4], "-"),
            ("37", 15, [4, 6, 5], " "),
            ("6011", 16, [16], ""),
            ("4", 16, [16], ""),
            ("34", 15, [15], ""),
            ("55", 16, [4, 4, 4, 4], " "),
            ("36", 14, [4, 6, 4], " "),
        ]
        return card(*kinds[i % len(kinds)])
    if kind == "IBAN_CODE":
        c = list(IBAN_LAYOUT)[i % len(IBAN_LAYOUT)]
        return iban(c, i % 2 == 0)
    if kind == "IP_ADDRESS":
        return [ipv4(), ipv6(True), ipv4(), ipv6(False)][i % 4]
    if kind == "PERSON":
        return person()
    return rng.choice(PLACES)


def fill(template, i):
    text, ents, pos = "", [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        text += template[pos : m.start()]
        v = value(m.group(1), i)
        ents.append({"type": m.group(1), "start": len(text), "end": len(text) + len(v)})
        text += v
        pos = m.end()
    return text + template[pos:], ents


NEG_TEMPLATES = [
    "Order {N} shipped on 2024-03-12.",
    "Card {BAD} was rejected: the number is not valid.",
    "The test number {BAD} fails the checksum.",
    "Reference {N}, quantity 12, price 1,250.00 USD.",
    "Version 3.12.1 fixed the build; see ticket {N}.",
    "The reading was 1234 5678 at 14:05.",
    "Invoice no. {BAD} is attached.",
    "Tracking code {N} is in the system.",
]

HAND = [
    ("The quarterly meeting moved to Thursday; agenda items are in the shared folder.", []),
    ("Use port 8080 for the dev server and 5432 for the database.", []),
    ("The recipe needs 250 g flour, 2 eggs and 1.5 dl milk.", []),
    ("Section 4.2.1 describes the retry policy in detail.", []),
]

HARD = [
    (
        "Our London office: 020 7946 0958, ask for reception.",
        [("LOCATION", "London"), ("PHONE_NUMBER", "020 7946 0958")],
    ),
    ("Call +44 (0)20 7946 0123 during UK hours.", [("PHONE_NUMBER", "+44 (0)20 7946 0123")]),
    ("Dial 0044 20 7946 0321 from abroad.", [("PHONE_NUMBER", "0044 20 7946 0321")]),
    ("Spanish mobile (+34) 612 34 56 78, WhatsApp only.", [("PHONE_NUMBER", "+34) 612 34 56 78")]),
    ("Support: +1 (415) 555-2671 ext. 12", [("PHONE_NUMBER", "+1 (415) 555-2671")]),
    ("Toll free 1-800-555-0199 any time.", [("PHONE_NUMBER", "1-800-555-0199")]),
    (
        "Sydney desk +61 2 9374 4000 or mobile 0412 345 678.",
        [("LOCATION", "Sydney"), ("PHONE_NUMBER", "+61 2 9374 4000"), ("PHONE_NUMBER", "0412 345 678")],
    ),
    ("Tokyo branch: 03-1234-5678.", [("LOCATION", "Tokyo"), ("PHONE_NUMBER", "03-1234-5678")]),
    ("Paris: 06 12 34 56 78 (portable).", [("LOCATION", "Paris"), ("PHONE_NUMBER", "06 12 34 56 78")]),
    ("Dubai contact +971 50 123 4567.", [("LOCATION", "Dubai"), ("PHONE_NUMBER", "+971 50 123 4567")]),
    ("Shanghai line +86 138 0013 8000 is busy.", [("LOCATION", "Shanghai"), ("PHONE_NUMBER", "+86 138 0013 8000")]),
    ("Moscow: +7 912 345-67-89.", [("LOCATION", "Moscow"), ("PHONE_NUMBER", "+7 912 345-67-89")]),
    ("phone:+4915123456789;fax:none", [("PHONE_NUMBER", "+4915123456789")]),
    ("Her SSN is 536228491 according to the form.", [("US_SSN", "536228491")]),
    ("SSN#536-22-8491 (verified)", [("US_SSN", "536-22-8491")]),
    ("social security 412.56.7788 on the W-2", [("US_SSN", "412.56.7788")]),
    ("Card: 4111-1111-1111-1111 exp 11/26", [("CREDIT_CARD", "4111-1111-1111-1111")]),
    ("cc=5555555555554444&cvv=123", [("CREDIT_CARD", "5555555555554444")]),
    ("JCB 3530 1113 3330 0000 was accepted.", [("CREDIT_CARD", "3530 1113 3330 0000")]),
    ("Discover 6011 0009 9013 9424 on file.", [("CREDIT_CARD", "6011 0009 9013 9424")]),
    ("Amex 3714 496353 98431 (corporate).", [("CREDIT_CARD", "3714 496353 98431")]),
    ("Diners Club 3056 930902 5904 expired.", [("CREDIT_CARD", "3056 930902 5904")]),
    ("UnionPay 6200 0000 0000 0005 test card.", [("CREDIT_CARD", "6200 0000 0000 0005")]),
    ("IBAN DE89 3704 0044 0532 0130 00 (Commerzbank)", [("IBAN_CODE", "DE89 3704 0044 0532 0130 00")]),
    ("Pay GB29NWBK60161331926819 today.", [("IBAN_CODE", "GB29NWBK60161331926819")]),
    ("Swiss account CH93 0076 2011 6238 5295 7.", [("IBAN_CODE", "CH93 0076 2011 6238 5295 7")]),
    ("Norwegian IBAN NO9386011117947 confirmed.", [("IBAN_CODE", "NO9386011117947")]),
    ("Maltese IBAN MT84MALT011000012345MTLCAST001S.", [("IBAN_CODE", "MT84MALT011000012345MTLCAST001S")]),
    ("Saudi account SA0380000000608010167519 for the refund.", [("IBAN_CODE", "SA0380000000608010167519")]),
    ("Brazil: BR1800360305000010009795493C1", [("LOCATION", "Brazil"), ("IBAN_CODE", "BR1800360305000010009795493C1")]),
    ("iban: fr14 2004 1010 0505 0001 3m02 606", [("IBAN_CODE", "fr14 2004 1010 0505 0001 3m02 606")]),
    ("Connect to 2001:db8::8a2e:370:7334 for the API.", [("IP_ADDRESS", "2001:db8::8a2e:370:7334")]),
    ("Link-local fe80::1ff:fe23:4567:890a%eth0 answered.", [("IP_ADDRESS", "fe80::1ff:fe23:4567:890a%eth0")]),
    ("client=[2001:db8::1]:8080 status=403", [("IP_ADDRESS", "2001:db8::1")]),
    ("Subnet 192.168.0.1/24 is internal.", [("IP_ADDRESS", "192.168.0.1/24")]),
    ("Mapped address ::ffff:192.0.2.128 seen.", [("IP_ADDRESS", "::ffff:192.0.2.128")]),
    ("src=10.0.0.254;dst=8.8.8.8", [("IP_ADDRESS", "10.0.0.254"), ("IP_ADDRESS", "8.8.8.8")]),
    ("Mail JANE.DOE@EXAMPLE.COM for access.", [("EMAIL_ADDRESS", "JANE.DOE@EXAMPLE.COM")]),
    (
        "Write to o'brien@example.ie or first.last+tag@sub.example.museum.",
        [("EMAIL_ADDRESS", "o'brien@example.ie"), ("EMAIL_ADDRESS", "first.last+tag@sub.example.museum")],
    ),
    (
        'From: "Ana Lima" <ana.lima@example.com.br>',
        [("PERSON", "Ana Lima"), ("EMAIL_ADDRESS", "ana.lima@example.com.br")],
    ),
    (
        "Dr. Wei Zhang and Prof. Maria Garcia met in Vienna.",
        [("PERSON", "Wei Zhang"), ("PERSON", "Maria Garcia"), ("LOCATION", "Vienna")],
    ),
    ("According to Angela Merkel, Berlin will host the summit.", [("PERSON", "Angela Merkel"), ("LOCATION", "Berlin")]),
    (
        "The patient, John O'Connor, was transferred from Cork to Dublin.",
        [("PERSON", "John O'Connor"), ("LOCATION", "Cork"), ("LOCATION", "Dublin")],
    ),
    (
        "Kenji Watanabe flew from Osaka to San Francisco.",
        [("PERSON", "Kenji Watanabe"), ("LOCATION", "Osaka"), ("LOCATION", "San Francisco")],
    ),
    (
        "Send the parcel to Emily Clarke, 12 Baker Street, London.",
        [("PERSON", "Emily Clarke"), ("LOCATION", "Baker Street"), ("LOCATION", "London")],
    ),
    # hard negatives: number-like text that is not personal data
    ("Card 4111 1111 1111 1112 failed the Luhn check.", []),
    ("Test number 5500-0000-0000-0005 is invalid.", []),
    ("ISBN 978-3-16-148410-0 is the second edition.", []),
    ("Release 10.4.2 ships on 2025-01-15 at 09:30.", []),
    ("The sensor logged 1234 5678 9012 3456 as a raw counter, not a card.", []),
    ("Set timeout=30000 and retries=5 in config.yaml.", []),
    ("Part number AB-2045-XZ, batch 000-00-0000.", []),
    ("The population grew by 3,456,789 between 2010 and 2020.", []),
    ("Account DE00 0000 0000 0000 0000 00 is a placeholder, not a valid IBAN.", []),
    ("Build 8.8.8 passed; commit 4f2a9c1 merged.", []),
]


def main() -> None:
    """Write the set: templated rows shuffled with seed 1313, then the hand-written rows with seed 7."""
    rows = []
    for kind, temps in TEMPLATES.items():
        n = 20 if kind not in ("PERSON", "LOCATION") else 12
        for i in range(n):
            t, e = fill(temps[i % len(temps)], i)
            rows.append({"text": t, "entities": e})
    for i in range(24):
        t, e = fill(MIXED[i % len(MIXED)], i + 3)
        rows.append({"text": t, "entities": e})

    for i in range(24):
        tpl = NEG_TEMPLATES[i % len(NEG_TEMPLATES)]
        bad = bad_card(*[("4", 16, [4, 4, 4, 4], " "), ("51", 16, [4, 4, 4, 4], "-"), ("4", 16, [16], "")][i % 3])
        n = str(rng.randint(10**7, 10**9))
        rows.append({"text": tpl.replace("{BAD}", bad).replace("{N}", n), "entities": []})

    for t, e in HAND:
        rows.append({"text": t, "entities": e})

    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["split"] = "test" if i % 2 else "train"
        for e in r["entities"]:
            assert r["text"][e["start"] : e["end"]]
    with open(OUT, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(len(rows))

    hard_rows = []
    for text, spans in HARD:
        ents, cursor = [], {}
        for kind, val in spans:
            start = text.find(val, cursor.get(val, 0))
            assert start >= 0, (text, val)
            cursor[val] = start + len(val)
            ents.append({"type": kind, "start": start, "end": start + len(val)})
        hard_rows.append({"text": text, "entities": ents})
    rng2 = random.Random(7)
    rng2.shuffle(hard_rows)
    for i, r in enumerate(hard_rows):
        r["split"] = "test" if i % 2 else "train"
    with open(OUT, "a") as f:
        for r in hard_rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(len(rows) + len(hard_rows))


if __name__ == "__main__":
    main()
