from stream_app.ingest.pii import PiiHasher


def test_hash_is_keyed_typed_and_stable():
    a, b = PiiHasher(b"key-a"), PiiHasher(b"key-b")
    assert a.hash("phone", "+8613800138000") == a.hash("phone", "+8613800138000")
    assert a.hash("phone", "+8613800138000") != b.hash("phone", "+8613800138000")
    assert a.hash("phone", "x") != a.hash("email", "x")
    assert a.hash("phone", "+8613800138000").startswith("h:")
    assert len(a.hash("phone", "+8613800138000")) == 34


def test_only_phone_and_email_are_protected():
    hasher = PiiHasher(b"k")
    assert hasher.protect("phone", "+8613800138000").startswith("h:")
    assert hasher.protect("email", "a@b.com").startswith("h:")
    assert hasher.protect("member_id", "M1") == "M1"


def test_redact_text_hashes_phones_and_emails_in_free_text():
    hasher = PiiHasher(b"k")
    text = "call 138-0013-8000 or +86 13912345678, mail Ann@Example.com; order 2026-11-22 #TM123"
    redacted = hasher.redact_text(text)
    for secret in ("138-0013-8000", "13912345678", "Ann@Example.com", "ann@example.com"):
        assert secret not in redacted
    assert hasher.hash("email", "ann@example.com") in redacted
    assert hasher.hash("phone", "+8613800138000") in redacted
    assert "2026-11-22" in redacted and "#TM123" in redacted
