import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.ingest.identifiers import IdentifierRules, normalize_identifier, normalize_phone

RULES = IdentifierRules.build(
    "CN",
    ["", "0", "null", "undefined", "unknown", "none"],
    {"phone": ["+86 138 0000 0000"], "device_id": ["shop-tablet"]},
)


@pytest.mark.parametrize(
    "spelling",
    [
        "13800138000",
        "+86 138-0013-8000",
        "0086 13800138000",
        "138 0013 8000",
        "+8613800138000",
        " 13800138000 ",
    ],
)
def test_phone_spellings_are_one_phone(spelling):
    assert normalize_identifier("phone", spelling, RULES) == "+8613800138000"


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "0",
        "null",
        "NULL",
        "undefined",
        "unknown",
        "None",
        "00000000000",
        "11111111111",
        "12345",
        "not a phone",
        "+86 138 0000 0000",
    ],
)
def test_junk_phones_never_link(junk):
    assert normalize_identifier("phone", junk, RULES) is None


def test_email_trimmed_and_lower_cased():
    assert normalize_identifier("email", "  Ann.Lee@Example.COM ", RULES) == "ann.lee@example.com"
    assert normalize_identifier("email", "not-an-email", RULES) is None


@pytest.mark.parametrize("id_type", ["member_id", "unionid", "openid", "device_id", "order_no"])
@pytest.mark.parametrize("junk", ["null", "undefined", " unknown ", "0", "none", ""])
def test_junk_values_for_every_type(id_type, junk):
    assert normalize_identifier(id_type, junk, RULES) is None


def test_deny_list_is_per_type():
    assert normalize_identifier("device_id", "shop-tablet", RULES) is None
    assert normalize_identifier("order_no", "shop-tablet", RULES) == "shop-tablet"


def test_other_types_are_kept_verbatim_but_trimmed():
    assert normalize_identifier("unionid", " oAbC123 ", RULES) == "oAbC123"


@given(
    st.sampled_from(["130", "139", "150", "186", "199"]),
    st.text("0123456789", min_size=8, max_size=8),
)
def test_phone_normalisation_is_idempotent(prefix, rest):
    e164 = normalize_phone(prefix + rest, "CN")
    if e164 is not None:
        assert normalize_phone(e164, "CN") == e164
        assert normalize_phone(f"0086 {prefix} {rest[:4]} {rest[4:]}", "CN") == e164
