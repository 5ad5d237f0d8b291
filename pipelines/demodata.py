"""Deterministic synthetic exports of a Dutch football club (no real people).

`write_demo(out, members=500, seed=2026)` writes the files Sportlink Club and
Nikki produce, in their formats (the columns of pipelines/readers/specs.py): a member
export (UTF-8 with BOM, CRLF), a team export (Windows-1252), a functions export
(`,`-separated), discipline cases, the Nikki contributions of two years and a
`photos/` folder. The same seed always gives the same bytes. A handful of bad
rows (an invalid email, a missing relatiecode, a duplicate relatiecode, an
unparseable date, a discipline case of an unknown member) make a demo run end
`partial` with errors pointing at those rows.
"""

from __future__ import annotations

import random
import string
import struct
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

FIRST_M = ["Daan", "Sem", "Lucas", "Milan", "Levi", "Luuk", "Noah", "Bram", "Thijs", "Jesse", "Finn", "Ruben",
           "Thomas", "Tim", "Jan", "Pieter", "Kees", "Henk", "Joost", "Wouter", "Daniël", "Joël", "Sven", "Niels",
           "Stijn", "Jurre", "Mats", "Gijs", "Teun", "Koen", "Hidde", "Olivier", "Tijn", "Siem", "Morris", "Bas"]
FIRST_V = ["Emma", "Julia", "Mila", "Tess", "Sophie", "Zoë", "Sara", "Nora", "Fenna", "Lotte", "Eva", "Anna",
           "Noor", "Liv", "Saar", "Lieke", "Fleur", "Sanne", "Iris", "Anouk", "Chloë", "Maud", "Femke", "Ilse",
           "Marloes", "Ingrid", "Renée", "Yara", "Isa", "Roos", "Floor", "Jip", "Esmee", "Lynn", "Merel", "Vera"]
LAST = [("", "Jansen"), ("de", "Vries"), ("van den", "Berg"), ("van", "Dijk"), ("", "Bakker"), ("", "Janssen"),
        ("", "Visser"), ("", "Smit"), ("", "Meijer"), ("de", "Boer"), ("", "Mulder"), ("de", "Groot"),
        ("", "Bos"), ("", "Vos"), ("", "Peters"), ("", "Hendriks"), ("van", "Leeuwen"), ("", "Dekker"),
        ("", "Brouwer"), ("de", "Wit"), ("", "Dijkstra"), ("", "Smits"), ("de", "Graaf"), ("van der", "Meer"),
        ("van der", "Linden"), ("", "Kok"), ("", "Jacobs"), ("de", "Haan"), ("", "Vermeulen"), ("van den", "Heuvel"),
        ("van der", "Veen"), ("van den", "Broek"), ("de", "Bruijn"), ("", "Schouten"), ("van", "Beek"),
        ("'t", "Hart"), ("in 't", "Veld"), ("", "Willemsen"), ("", "Hoekstra"), ("", "Koç"), ("", "Yılmaz"),
        ("", "El Amrani"), ("", "Maas"), ("", "Verhoeven"), ("", "Koster"), ("", "Prins"), ("", "Huisman")]
STREETS = ["Dorpsstraat", "Kerkstraat", "Molenweg", "Sportlaan", "Schoolstraat", "Julianastraat", "Beatrixlaan",
           "Wilhelminastraat", "Stationsweg", "Nieuwstraat", "Parallelweg", "Eikenlaan", "Beukenlaan", "Lindelaan"]
CITIES = [("Amersfoort", "38"), ("Leusden", "38"), ("Soest", "37"), ("Baarn", "37"), ("Hoogland", "38")]
DOMAINS = ["example.org", "example.com", "example.net"]
COMMISSIES = ["Bestuur", "Jeugdcommissie", "Technische commissie", "Kantinecommissie", "Sponsorcommissie",
              "Activiteitencommissie", "Scheidsrechterscommissie", "Ledenadministratie", "Communicatiecommissie",
              "Accommodatiecommissie"]
FUNCTIONS = ["Voorzitter", "Secretaris", "Penningmeester", "Lid", "Lid", "Coördinator"]
OFFENCES = [("Ernstig wangedrag", "Schorsing 3 wedstrijden"), ("Twee gele kaarten", "Schorsing 1 wedstrijd"),
            ("Natrappen", "Schorsing 2 wedstrijden"), ("Beledigen scheidsrechter", "Schorsing 4 wedstrijden"),
            ("Rode kaart: onreglementair", "Schorsing 1 wedstrijd"), ("Vijf gele kaarten", "Schorsing 1 wedstrijd")]

MEMBER_HEADER = [
    "Naam", "Roepnaam", "Voorletter(s)", "Tussenvoegsel(s)", "Achternaam", "Lidsoort", "Rel. code", "Geslacht",
    "Geb.dat.", "E-mailadres", "Leeftijdscategorie", "Lokale teams", "Spelactiviteiten (vereniging)",
    "Spelactiviteiten (bond)", "Registratie in Sportlink", "Lid sinds", "Afmelddatum", "Straat", "Huisnummer",
    "Toevoeging", "Postcode", "Woonplaats", "Telefoon", "Mobiel", "Naam ouder 1", "E-mailadres ouder 1",
    "Telefoon ouder 1", "Naam ouder 2", "E-mailadres ouder 2", "Telefoon ouder 2",
]
TEAM_HEADER = ["Team", "Teamcode", "Teamsoort", "Teamrol", "Naam", "Roepnaam", "Voorletter(s)", "Tussenvoegsel(s)",
               "Achternaam", "Lidsoort", "Rel. code", "Geslacht", "Geb.dat.", "E-mailadres"]
FUNCTION_HEADER = ["Commissie", "Commissiecode", "Functie", "Rel. code", "Naam", "Vanaf", "Tot en met"]
DISCIPLINE_HEADER = ["Dossiernummer", "Rel. code", "Naam", "Wedstrijddatum", "Wedstrijd", "Team", "Overtreding",
                     "Strafmaatregel", "Boete", "Status"]
NIKKI_HEADER = ["Jaar", "Naam", "Adres", "Lidnr.", "Team", "Nikki ID", "Bedrag", "Saldo", "Status"]


@dataclass
class Person:
    code: str
    first: str
    infix: str
    last: str
    gender: str  # "Man" / "Vrouw"
    birth: date
    email: str
    since: date
    street: str
    number: str
    postcode: str
    city: str
    mobile: str
    teams: list[tuple[str, str]] = field(default_factory=list)  # (team name, role)
    parents: list[tuple[str, str, str]] = field(default_factory=list)  # (name, email, phone)

    @property
    def initials(self) -> str:
        return self.first[0] + "."

    @property
    def naam(self) -> str:
        """Sportlink's `Naam`: `Achternaam, V. (Roepnaam) tussenvoegsel`."""
        return f"{self.last}, {self.initials} ({self.first}) {self.infix}".strip()

    @property
    def display(self) -> str:
        return " ".join(p for p in (self.first, self.infix, self.last) if p)


def _age_category(birth: date, season_year: int) -> str:
    age = season_year - birth.year
    if age >= 19:
        return "Senioren"
    return f"Onder {max(age + 1, 6)}"


def _fits(team: str, gender: str) -> bool:
    if team.startswith(("MO", "VR")):
        return gender == "Vrouw"
    if team[0].isdigit():  # senior men and veterans
        return gender == "Man"
    return True  # JO teams are mixed


def _team_plan() -> list[tuple[str, str, str, int, int]]:
    """30 teams: (name, code, kind, min age, max age)."""
    plan = []
    for age in (8, 9, 10, 11, 12, 13, 14, 15, 17, 19):
        plan.append((f"JO{age}-1", "Jeugd", age - 2, age - 1))
        plan.append((f"JO{age}-2", "Jeugd", age - 2, age - 1))
    for age in (11, 13, 15, 17):
        plan.append((f"MO{age}-1", "Jeugd", age - 2, age - 1))
    for n in range(1, 5):
        plan.append((f"{n}", "Senioren", 19, 34))
    plan.append(("VR1", "Senioren", 19, 34))
    plan.append(("35+1", "Veteranen", 35, 60))
    return [(name, f"T{100000 + i * 137:06d}", kind, lo, hi) for i, (name, kind, lo, hi) in enumerate(plan)]


class _Codes:
    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set[str]()

    def new(self) -> str:
        letters, digits = string.ascii_uppercase, string.digits
        while True:
            r = self.rng
            code = "".join((r.choice(letters), r.choice(letters), r.choice(letters), r.choice(digits),
                            r.choice(digits), r.choice(letters), r.choice(digits)))
            if code not in self.used:
                self.used.add(code)
                return code


def _phone(rng: random.Random) -> str:
    return f"06-{rng.randrange(10000000, 99999999)}"


def _email(rng: random.Random, first: str, infix: str, last: str, n: int) -> str:
    local = f"{first}.{infix.replace(' ', '').replace(chr(39), '')}{last}".lower().replace(" ", "")
    local = local.translate(str.maketrans("ëïéçıöü", "eieciou"))
    return f"{local}{n}@{rng.choice(DOMAINS)}"


def generate(members: int = 500, seed: int = 2026, year: int = 2026) -> dict:
    """The club as Python data; `write_demo` turns it into files."""
    rng = random.Random(seed)
    codes = _Codes(rng)
    teams = _team_plan()
    people: list[Person] = []
    families: list[tuple[str, str, list[tuple[str, str, str]]]] = []  # (infix, last, parents)
    for i in range(members):
        gender = "Man" if rng.random() < 0.7 else "Vrouw"
        first = rng.choice(FIRST_M if gender == "Man" else FIRST_V)
        youth = rng.random() < 0.6
        if youth:
            birth = date(year - rng.randint(6, 18), rng.randint(1, 12), rng.randint(1, 28))
        else:
            birth = date(year - rng.randint(19, 70), rng.randint(1, 12), rng.randint(1, 28))
        age = year - birth.year
        if youth and families and rng.random() < 0.2:
            infix, last, parents = rng.choice(families)  # a brother or sister
        else:
            infix, last = rng.choice(LAST)
            parents = []
            if age < 18:
                for _p in range(1 if rng.random() < 0.4 else 2):
                    p_first = rng.choice(FIRST_M + FIRST_V)
                    p_name = " ".join(x for x in (p_first, infix, last) if x)
                    parents.append((p_name, _email(rng, p_first, infix, last, 900 + len(families)),
                                    _phone(rng)))
                families.append((infix, last, parents))
        city, prefix = rng.choice(CITIES)
        person = Person(
            code=codes.new(), first=first, infix=infix, last=last, gender=gender, birth=birth,
            email=_email(rng, first, infix, last, i) if age >= 12 else "",
            since=date(max(birth.year + 5, year - 15), rng.randint(1, 12), rng.randint(1, 28)),
            street=rng.choice(STREETS), number=str(rng.randint(1, 180)),
            postcode=f"{prefix}{rng.randint(10, 99)} {rng.choice('ABCDEFGHJKLMNPRSTVWXZ')}"
                     f"{rng.choice('ABCDEFGHJKLMNPRSTVWXZ')}",
            city=city, mobile=_phone(rng) if age >= 14 else "", parents=parents,
        )
        fitting = [t for t in teams if t[3] <= age <= t[4] and _fits(t[0], gender)]
        if fitting and rng.random() < 0.85:
            team = rng.choice(fitting)
            person.teams.append((team[0], "Teamspeler"))
        people.append(person)
    # Staff: adults coach one or two teams.
    adults = [p for p in people if year - p.birth.year >= 21]
    for name, _code, _kind, _lo, _hi in teams:
        if adults:
            for role in ("Technische staf",) + (("Overige staf",) if rng.random() < 0.5 else ()):
                rng.choice(adults).teams.append((name, role))
    commissies = []
    for i, name in enumerate(COMMISSIES):
        seats = []
        for function in rng.sample(FUNCTIONS, k=min(len(FUNCTIONS), rng.randint(3, 6))):
            if adults:
                since = date(year - rng.randint(0, 8), rng.randint(1, 12), 1)
                until = since + timedelta(days=365 * 3) if rng.random() < 0.15 else None
                seats.append((rng.choice(adults), function, since, until))
        commissies.append((name, f"C{200 + i:03d}", seats))
    players = [p for p in people if any(role == "Teamspeler" for _t, role in p.teams) and year - p.birth.year >= 15]
    cases = []
    for i in range(6 if players else 0):
        p = rng.choice(players)
        offence, sanction = rng.choice(OFFENCES)
        cases.append((f"T-{31000 + i * 173}", p, date(year, rng.randint(1, 10), rng.randint(1, 28)), offence,
                      sanction, Decimal(rng.choice(["12.50", "25.00", "37.50", "55.00"]))))
    return {"people": people, "teams": teams, "commissies": commissies, "cases": cases, "year": year, "rng": rng}


# --- writing ----------------------------------------------------------------------


def _line(cells: list[str], sep: str = ";") -> str:
    """Sportlink's style: every non-empty field quoted, empty fields left empty."""
    return sep.join('"' + c.replace('"', '""') + '"' if c else "" for c in cells)


def _write(path: Path, header: list[str], rows: list[list[str]], *, sep: str = ";", encoding: str = "utf-8-sig",
           newline: str = "\r\n") -> None:
    text = newline.join([_line(header, sep)] + [_line(r, sep) for r in rows]) + newline
    path.write_bytes(text.encode(encoding))


def _euro(amount: Decimal) -> str:
    """`€ 1.234,56` like Nikki shows it."""
    sign = "-" if amount < 0 else ""
    whole, cents = f"{abs(amount):.2f}".split(".")
    groups: list[str] = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return f"{sign}€ {'.'.join(groups)},{cents}"


def _member_row(p: Person, year: int) -> list[str]:
    teams = ", ".join(sorted({t for t, role in p.teams if role == "Teamspeler"}))
    parents = p.parents + [("", "", "")] * (2 - len(p.parents))
    return [
        p.naam, p.first, p.initials, p.infix, p.last, "Bondslid" if p.teams else "Verenigingslid", p.code,
        p.gender, p.birth.isoformat(), p.email, _age_category(p.birth, year), teams,
        "Veld" if p.teams else "", "Veld" if p.teams else "", p.since.isoformat(), p.since.isoformat(), "",
        p.street, p.number, "", p.postcode, p.city, "", p.mobile,
        parents[0][0], parents[0][1], parents[0][2], parents[1][0], parents[1][1], parents[1][2],
    ]


def _png(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    """A tiny solid-colour PNG (a stand-in portrait)."""
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + \
        chunk(b"IEND", b"")


def write_demo(out: Path | str, *, members: int = 500, seed: int = 2026, year: int = 2026,
               photos: int = 8) -> dict[str, int]:
    """Write the demo exports into `out`; returns counts per file kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    club = generate(members, seed, year)
    people: list[Person] = club["people"]
    rng: random.Random = club["rng"]

    member_rows = [_member_row(p, year) for p in people]
    if len(people) >= 10:
        # The bad rows a volunteer's export really contains.
        bad_email = _member_row(people[3], year)
        bad_email[6] = "ZZB01X1"
        bad_email[9] = "jeroen.pietersen@@example.org"
        bad_email[0] = "Pietersen, J. (Jeroen)"
        bad_email[1], bad_email[4] = "Jeroen", "Pietersen"
        no_code = _member_row(people[5], year)
        no_code[6] = ""
        no_code[9] = "zonder.relatiecode@example.org"
        duplicate = _member_row(people[8], year)
        duplicate[0], duplicate[1], duplicate[4] = "Dubbel, D. (Dirk)", "Dirk", "Dubbel"
        duplicate[9] = "dirk.dubbel@example.com"
        bad_date = _member_row(people[9], year)
        bad_date[6] = "ZZB02X2"
        bad_date[8] = "2012-02-30"
        bad_date[0], bad_date[1], bad_date[4] = "Datum, F. (Fenna)", "Fenna", "Datum"
        for offset, row in ((17, bad_email), (41, no_code), (66, duplicate), (90, bad_date)):
            member_rows.insert(min(offset, len(member_rows)), row)
    _write(out / f"Leden {len(member_rows)} personen gevonden.csv", MEMBER_HEADER, member_rows)

    # The team export: one row per person per team per role; Windows-1252, Male/Female.
    codes = {name: code for name, code, *_rest in club["teams"]}
    kinds = {name: kind for name, _code, kind, *_rest in club["teams"]}
    team_rows = []
    for p in people:
        for team, role in p.teams:
            team_rows.append([team, codes[team], kinds[team], role, p.naam, p.first, p.initials, p.infix, p.last,
                              "Bondslid", p.code, "Male" if p.gender == "Man" else "Female", p.birth.isoformat(),
                              p.email])
    team_rows.sort(key=lambda r: (r[0], r[3], r[8]))
    _write(out / f"Teams {len(team_rows)} personen gevonden.csv", TEAM_HEADER,
           [[c.encode("cp1252", "replace").decode("cp1252") for c in r] for r in team_rows],
           encoding="cp1252")

    # Functions in commissies: `,`-separated, UTF-8 without BOM, LF.
    function_rows = []
    for name, code, seats in club["commissies"]:
        for p, function, since, until in seats:
            function_rows.append([name, code, function, p.code, p.display, since.isoformat(),
                                  until.isoformat() if until else ""])
    _write(out / f"Functies {len(function_rows)} personen gevonden.csv", FUNCTION_HEADER, function_rows, sep=",",
           encoding="utf-8", newline="\n")

    discipline_rows = []
    for dossier, p, when, offence, sanction, fee in club["cases"]:
        team = next((t for t, role in p.teams if role == "Teamspeler"), "")
        discipline_rows.append([dossier, p.code, p.naam, when.isoformat(), f"{team} - Tegenstander {team}",
                                team, offence, sanction, _euro(fee), "Afgehandeld"])
    if discipline_rows:
        discipline_rows.append(["T-39999", "ZZZ99Z9", "Onbekend, O. (Otto)", f"{year}-03-14", "", "", "Natrappen",
                                "Schorsing 2 wedstrijden", "€ 25,00", "In behandeling"])
    _write(out / f"Tuchtzaken {len(discipline_rows)} gevonden.csv", DISCIPLINE_HEADER, discipline_rows)

    # Nikki: two years, one line per member per year; some members pay in two lines.
    nikki_rows = []
    for y in (year - 1, year):
        for i, p in enumerate(people):
            fee = Decimal("95.00") if year - p.birth.year < 13 else Decimal("145.00") if year - p.birth.year < 19 \
                else Decimal("1235.50") if i % 97 == 0 else Decimal("210.00")
            status = rng.choice(["Betaald"] * 6 + ["Open", "Deels betaald"])
            paid = fee if status == "Betaald" else Decimal("0") if status == "Open" else (fee / 2).quantize(fee)
            team = next((t for t, role in p.teams if role == "Teamspeler"), "")
            address = f"{p.street} {p.number}, {p.city}"
            nikki_id = f"N{y % 100:02d}{i:06d}"
            lines = [(fee, fee - paid, status)]
            if i % 23 == 0:  # two lines of one member and year: summed, the worst status wins
                lines = [(fee / 2, Decimal("0"), "Betaald"), (fee / 2, fee - paid, status)]
            for amount, balance, line_status in lines:
                nikki_rows.append([str(y), p.display, address, p.code, team, nikki_id, _euro(amount), _euro(balance),
                                   line_status])
    _write(out / f"Nikki contributie {year - 1}-{year}.csv", NIKKI_HEADER, nikki_rows)

    photo_dir = out / "photos"
    photo_dir.mkdir(exist_ok=True)
    with_photo = people[: min(photos, len(people))]
    for p in with_photo:
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        (photo_dir / f"{p.code}.png").write_bytes(_png(colour))
    return {"members": len(member_rows), "teams": len(team_rows), "functions": len(function_rows),
            "discipline": len(discipline_rows), "nikki": len(nikki_rows), "photos": len(with_photo)}
