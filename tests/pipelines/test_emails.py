"""The one email rule (pipelines.emails): every caller gives the same answer for every address.

The readers (a member's and a parent's email cell), Laposta (members and parents
lists) and FreeScout (customers) all refuse exactly the addresses the rule refuses.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import emails
from pipelines.emails import email_error, email_problem, is_valid_email, normalise_email
from pipelines.freescout import freescout_steps
from pipelines.laposta import laposta_steps
from pipelines.models import Member
from pipelines.readers import BadValue, open_table, parse_email, read_members
from pipelines.records import MemberRecord, ParentRecord
from runs.models import RunError
from runs.pipeline import register, unregister
from runs.runner import run_pipeline

VALID = [
    "jan@example.nl",
    "  piet@example.nl ",             # whitespace around it is not part of it
    "Jan.Jansen@Example.NL",          # case is kept; compared in lower case
    "a.b+c@sub.example.nl",
    "o'brien@example.ie",
    "jan_j-2@example.co.uk",
    "piet@mail.club2.nl",             # a digit in a label before the top-level domain
    "a{b}@example.nl",                # odd but allowed by RFC 5322 and the mail servers
    "anna@café.fr",                   # an internationalised domain, checked as xn--caf-dma.fr
    "ivan@пример.рф",
    "olga@example.xn--p1ai",          # an IDN top-level domain in its ASCII form
    "kees@example.nl\u00a0",          # a non-breaking space from a spreadsheet
]

INVALID = [
    ("jöran@example.nl", "'ö' cannot be in the part before the @"),
    ("jan@example.123", "'example.123' after the @ is not a domain name such as example.nl"),
    ("jan@mail.example.123", "'mail.example.123' after the @ is not a domain name such as example.nl"),
    ("jan@localhost", "'localhost' after the @ is not a domain name such as example.nl"),
    ("jan@[192.0.2.1]", "'[192.0.2.1]' after the @ is not a domain name such as example.nl"),
    ("jan..jansen@example.nl", "the part before the @ has a dot first, last or twice in a row"),
    (".jan@example.nl", "the part before the @ has a dot first, last or twice in a row"),
    ("jan.@example.nl", "the part before the @ has a dot first, last or twice in a row"),
    ("jan@example..nl", "'example..nl' after the @ is not a domain name such as example.nl"),
    ("jan@-example.nl", "'-example.nl' after the @ is not a domain name such as example.nl"),
    ("jan@exa_mple.nl", "'exa_mple.nl' after the @ is not a domain name such as example.nl"),
    ("jan@example.nl.", "'example.nl.' after the @ is not a domain name such as example.nl"),
    ("jan@example", "'example' after the @ is not a domain name such as example.nl"),
    ("jan@example.c", "'example.c' after the @ is not a domain name such as example.nl"),
    ("jan@ex\u200bample.nl", "'ex\\u200bample.nl' after the @ is not a domain name such as example.nl"),
    ("jan", "it has no @"),
    ("jan@", "nothing comes after the @"),
    ("@example.nl", "nothing comes before the @"),
    ("jan@@example.nl", "it has more than one @"),
    ("jan jansen@example.nl", "it contains a space"),
    ("Jan <jan@example.nl>", "it contains a space"),
    ("jan@example.nl; piet@example.nl", "it contains ; or , (one address per field)"),
    ("jan@example.nl,piet@example.nl", "it contains ; or , (one address per field)"),
    ('"jan"@example.nl', "'\"' cannot be in the part before the @"),
    ("mailto:jan@example.nl", "':' cannot be in the part before the @"),
    ("x" * 65 + "@example.nl", "the part before the @ is longer than 64 characters"),
    ("jan@" + "a" * 250 + ".nl", "it is longer than 254 characters"),
]
INVALID_ADDRESSES = [address for address, _reason in INVALID]
# Every address on its own member: (relatiecode, address).
PAIRS = [(f"EM{n:04d}", address) for n, address in enumerate(VALID + INVALID_ADDRESSES)]
INVALID_CODES = {code for code, address in PAIRS if address in INVALID_ADDRESSES}


@pytest.mark.parametrize("address", VALID)
def test_valid_addresses(address):
    assert is_valid_email(address) and email_problem(address) == "" and email_error(address) == ""
    assert parse_email(address) == address.strip()


@pytest.mark.parametrize(("address", "reason"), INVALID)
def test_invalid_addresses_say_why(address, reason):
    assert not is_valid_email(address)
    assert email_problem(address) == reason
    with pytest.raises(BadValue) as info:
        parse_email(address)
    assert str(info.value) == f"email address {address.strip()!r} is not a valid email address ({reason})"


def test_an_empty_cell_is_no_email_not_an_error():
    assert parse_email("") == "" and parse_email("   ") == ""
    assert email_problem("") == "it is empty"


def test_the_key_is_trimmed_and_in_lower_case():
    assert normalise_email("  Jan.Jansen@Example.NL ") == "jan.jansen@example.nl"
    assert normalise_email(None) == ""


def test_the_message_names_the_column():
    with pytest.raises(BadValue) as info:
        parse_email("jan@", "email address of parent 1")
    assert str(info.value) == ("email address of parent 1 'jan@' is not a valid email address "
                               "(nothing comes after the @)")


def test_laposta_freescout_and_the_admin_use_the_one_rule():
    from pipelines import admin, freescout, laposta

    # The admin's contact form (corrections) checks an email with it too (tests/pipelines/test_corrections.py).
    assert laposta.email_problem is freescout.email_problem is admin.email_problem is emails.email_problem
    assert laposta.normalise_email is freescout.normalise_email is emails.normalise_email


def _csv(header, rows):
    def cell(value):
        return '"' + value.replace('"', '""') + '"'

    return (";".join(header) + "\n" + "".join(";".join(cell(v) for v in row) + "\n" for row in rows)).encode()


def test_the_readers_refuse_exactly_the_invalid_addresses_of_members_and_parents():
    members = read_members(open_table("Leden.csv", _csv(
        ["Rel. code", "Achternaam", "E-mailadres"], [(code, "Jansen", a) for code, a in PAIRS])))
    assert {error.identifier for error in members.errors} == INVALID_CODES
    assert all("is not a valid email address (" in error.message for error in members.errors)
    assert [m.email for m in members.records] == [a.strip() for a in VALID]

    parents = read_members(open_table("Leden.csv", _csv(
        ["Rel. code", "Achternaam", "E-mailadres ouder 1"], [(code, "Jansen", a) for code, a in PAIRS])))
    assert {error.identifier for error in parents.errors} == INVALID_CODES
    assert len(parents.records) == len(PAIRS)  # a bad parent email does not cost the member


@pytest.fixture
def destinations(httpserver, settings):
    """Laposta and FreeScout configured; the runs are dry, so nothing is sent."""
    settings.LAPOSTA_API_KEY = "laposta-test-key-0123456789"
    settings.LAPOSTA_BASE_URL = httpserver.url_for("/v2")
    settings.LAPOSTA_MEMBERS_LIST_ID = "members-list"
    settings.LAPOSTA_PARENTS_LIST_ID = "parents-list"
    settings.FREESCOUT_API_KEY = "freescout-test-key-0123456789"
    settings.FREESCOUT_BASE_URL = httpserver.url_for("")
    records = {}

    @register("emails-test")
    def emails_test(run):
        laposta_steps(run, members=records["members"], parents=records["parents"])
        freescout_steps(run)

    def run(members, parents):
        records.update(members=members, parents=parents)
        return run_pipeline("emails-test", dry_run=True)

    yield run
    unregister("emails-test")
    assert not httpserver.log  # a dry run sends nothing


@pytest.mark.django_db(transaction=True)
def test_laposta_and_freescout_refuse_exactly_the_invalid_addresses(destinations):
    # The registry's column holds at most 254 characters (PostgreSQL enforces it), so an
    # address over that never reaches FreeScout from the registry: the readers refuse it first.
    max_length = Member._meta.get_field("email").max_length
    too_long = {code for code, address in PAIRS if len(address) > max_length}
    for code, address in PAIRS:
        if code not in too_long:
            Member.objects.create(knvb_id=code, last_name="Jansen", email=address)
    run = destinations([MemberRecord(knvb_id=code, last_name="Jansen", email=a) for code, a in PAIRS],
                       [ParentRecord(email=a, name="Ouder") for _code, a in PAIRS])
    errors = RunError.objects.filter(run=run)

    def refused(step, kind):  # an identifier is cut short to fit its column: compare the start
        return {e.identifier[:40] for e in errors if e.step_name == step and e.identifier_kind == kind}

    assert refused("laposta-prepare", "knvb_id") == INVALID_CODES
    assert refused("laposta-prepare", "email") == {a.strip()[:40] for a in INVALID_ADDRESSES}
    assert too_long and refused("freescout-sync", "knvb_id") == INVALID_CODES - too_long
    message = errors.get(step_name="freescout-sync", identifier=PAIRS[len(VALID)][0]).message
    assert message == "Invalid email address 'jöran@example.nl' ('ö' cannot be in the part before the @): " \
                      "not sent to FreeScout"


_EMAILISH = st.one_of(
    st.text(alphabet="aZ09.-_+@;, xn!#~", max_size=30),
    st.from_regex(r"[a-zA-Z0-9.+-]{1,8}@[a-zA-Z0-9.-]{1,14}", fullmatch=True),
    st.from_regex(r"[a-z]{1,70}@[a-z]{1,3}\.(nl|xn--p1ai|x|XN--a|n1)", fullmatch=True),
)


@settings(max_examples=1000, deadline=None)
@given(_EMAILISH)
def test_the_fast_path_for_ascii_agrees_with_the_step_by_step_rule(text):
    from pipelines.emails import _VALID_ASCII, _problem

    address = text.strip()
    fast = len(address) <= 254 and _VALID_ASCII.fullmatch(address) is not None and address.index("@") <= 64
    assert fast == (_problem(address) == "")


def test_the_length_limits_hold_at_their_exact_boundaries():
    local_64, domain = "a" * 64, "example.nl"
    assert email_problem(f"{local_64}@{domain}") == ""
    assert email_problem(f"a{local_64}@{domain}") == "the part before the @ is longer than 64 characters"
    labels = ".".join(["b" * 60] * 4)  # 243 characters: with "x@" and ".nl" exactly 248
    address_254 = "x" * (254 - len(labels) - len("@.nl")) + "@" + labels + ".nl"
    assert len(address_254) == 254 and email_problem(address_254) == ""
    address_255 = "y" + address_254
    assert email_problem(address_255) == "it is longer than 254 characters"


def test_the_message_names_the_field_as_an_email_address_by_default():
    assert email_error("jan@@example.nl") == \
        "email address 'jan@@example.nl' is not a valid email address (it has more than one @)"
    assert email_error(" jan@example.nl ") == ""


def test_the_length_limits_hold_for_an_internationalised_domain_too():
    """Not ASCII, so these take the step-by-step rule rather than the one expression."""
    assert email_problem("a" * 64 + "@café.nl") == ""
    assert email_problem("a" * 65 + "@café.nl") == "the part before the @ is longer than 64 characters"
    labels = ".".join(["b" * 60] * 4)
    address = "x" * (254 - len(labels) - len("@café..nl")) + "@café." + labels + ".nl"
    assert len(address) == 254 and email_problem(address) == ""
    assert email_problem("y" + address) == "it is longer than 254 characters"
