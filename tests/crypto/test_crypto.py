"""aioapollo.crypto: jasypt compatibility (fixtures made by the real jasypt, and a live round
trip through Java when it is installed), Fernet, and decryptors from the environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aioapollo.crypto import Fernet, Jasypt, decryptor_from_env, is_encrypted, unwrap

from .jasypt import DECRYPT, ENCRYPT, run, why_no_java

FIXTURES = json.loads(Path(__file__).with_name("jasypt_fixtures.json").read_text("utf-8"))
CASES: list[dict[str, Any]] = FIXTURES["cases"]


def _jasypt(case: dict[str, Any]) -> Jasypt:
    return Jasypt(
        case["password"], case["algorithm"], case["iterations"], random_iv=case["random_iv"]
    )


def _id(case: dict[str, Any]) -> str:
    return f"{case['algorithm']}-{case['iterations']}-iv{case['random_iv']}-{len(case['plain'])}"


def test_fixtures_cover_the_defaults() -> None:
    made = {(c["algorithm"], c["random_iv"]) for c in CASES}
    assert ("PBEWITHHMACSHA512ANDAES_256", True) in made  # jasypt-spring-boot 3.x
    assert ("PBEWithMD5AndDES", False) in made  # jasypt-spring-boot 2.x
    assert "jasypt" in FIXTURES["made_by"]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_values_made_by_jasypt_decrypt(case: dict[str, Any]) -> None:
    jasypt = _jasypt(case)
    assert jasypt.decrypt(case["encrypted"]) == case["plain"]
    assert jasypt.decrypt(f" ENC({case['encrypted']}) ") == case["plain"]


@pytest.mark.parametrize("case", CASES[:1] + [c for c in CASES if "DES" in c["algorithm"]][:1])
def test_a_wrong_password_is_a_clear_error_without_the_value(case: dict[str, Any]) -> None:
    wrong = Jasypt("not the password", case["algorithm"], random_iv=case["random_iv"])
    with pytest.raises(ValueError, match=r"does not decrypt|not UTF-8") as info:
        wrong.decrypt(case["encrypted"])
    assert case["encrypted"] not in str(info.value) and case["plain"] not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "text", ["not base64!", "QUJD", "", "AAAA" * 5], ids=["junk", "short", "empty", "odd"]
)
def test_corrupt_text_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a jasypt value|does not decrypt"):
        Jasypt("pw").decrypt(text)


@pytest.mark.parametrize(
    ("algorithm", "random_iv"),
    [
        ("PBEWITHHMACSHA512ANDAES_256", True),
        ("PBEWithMD5AndDES", False),
        ("PBEWithMD5AndDES", True),
        ("PBEWITHHMACSHA256ANDAES_128", True),
    ],
)
def test_encrypt_round_trips_with_a_fresh_salt(algorithm: str, random_iv: bool) -> None:
    jasypt = Jasypt("pw", algorithm, random_iv=random_iv)
    first, second = jasypt.encrypt("pässwörd ✓"), jasypt.encrypt("pässwörd ✓")
    assert first != second  # a random salt each time
    assert jasypt.decrypt(first) == jasypt.decrypt(second) == "pässwörd ✓"


def test_settings_are_checked_and_the_password_never_shown() -> None:
    jasypt = Jasypt("hunter2-password")
    assert "hunter2" not in repr(jasypt) and "hunter2" not in str(jasypt)
    assert repr(jasypt) == (
        "Jasypt(algorithm='PBEWITHHMACSHA512ANDAES_256', iterations=1000, random_iv=True)"
    )
    with pytest.raises(ValueError, match=r"unknown jasypt algorithm 'PBEWITHSHA1ANDRC4'"):
        Jasypt("pw", "PBEWITHSHA1ANDRC4")
    with pytest.raises(ValueError, match="needs random_iv=True"):
        Jasypt("pw", random_iv=False)
    with pytest.raises(ValueError, match="ASCII only"):
        Jasypt("Grüße")
    with pytest.raises(ValueError, match="non-empty"):
        Jasypt("")


def test_fernet_rotation_and_errors() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = Fernet(old).encrypt("s3cr3t")
    rotated = Fernet([new, old])
    assert rotated.decrypt(token) == rotated.decrypt(f"ENC({token})") == "s3cr3t"
    assert Fernet(new).decrypt(rotated.encrypt("x")) == "x"  # the first key encrypts
    assert Fernet(new).decrypt(rotated.rotate(token)) == "s3cr3t"
    with pytest.raises(ValueError, match="no key matches") as info:
        Fernet(new).decrypt(token)
    assert token not in str(info.value)
    with pytest.raises(ValueError, match=r"key #2 is not a Fernet key"):
        Fernet([new, "short"])
    assert repr(rotated) == "Fernet(keys=2)" and new not in repr(rotated)


def test_unwrap() -> None:
    assert unwrap("ENC(abc)") == "abc" and unwrap("  ENC( abc )\n") == "abc"
    assert unwrap("plain") is None and unwrap("ENC(abc") is None and unwrap("") is None
    assert unwrap("xENC(abc)") is None and is_encrypted("ENC()")


def test_decryptor_from_env(tmp_path: Path) -> None:
    assert decryptor_from_env({}) is None
    jasypt = decryptor_from_env({"APOLLO_JASYPT_PASSWORD": CASES[0]["password"]})
    assert isinstance(jasypt, Jasypt) and jasypt.decrypt(CASES[0]["encrypted"]) == "s3cr3t"
    secret = tmp_path / "password"
    secret.write_text(CASES[0]["password"] + "\n")
    from_file = decryptor_from_env({"APOLLO_JASYPT_PASSWORD_FILE": str(secret)})
    assert isinstance(from_file, Jasypt) and from_file.decrypt(CASES[0]["encrypted"]) == "s3cr3t"
    des = next(c for c in CASES if "DES" in c["algorithm"] and not c["random_iv"])
    old = decryptor_from_env(
        {
            "APOLLO_JASYPT_PASSWORD": des["password"],
            "APOLLO_JASYPT_ALGORITHM": "PBEWithMD5AndDES",
            "APOLLO_JASYPT_RANDOM_IV": "false",
        }
    )
    assert old is not None and old.decrypt(des["encrypted"]) == des["plain"]
    key = Fernet.generate_key()
    fernet = decryptor_from_env({"APOLLO_FERNET_KEYS": f"{key}, {Fernet.generate_key()}"})
    assert isinstance(fernet, Fernet) and repr(fernet) == "Fernet(keys=2)"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APOLLO_JASYPT_PASSWORD": "a", "APOLLO_FERNET_KEYS": "b"}, "not both"),
        ({"APOLLO_JASYPT_PASSWORD": "a", "APOLLO_JASYPT_PASSWORD_FILE": "f"}, "not both"),
        ({"APOLLO_JASYPT_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read '/nonexistent/pw'"),
        ({"APOLLO_JASYPT_PASSWORD": "a", "APOLLO_JASYPT_ITERATIONS": "many"}, "whole number"),
        ({"APOLLO_JASYPT_PASSWORD": "a", "APOLLO_JASYPT_RANDOM_IV": "maybe"}, "true or false"),
        ({"APOLLO_FERNET_KEYS": "hunter2"}, "key #1 is not a Fernet key"),
    ],
)
def test_bad_environment_is_a_clear_error_without_the_secret(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        decryptor_from_env(env)
    assert "hunter2" not in str(info.value)


# ---------------------------------------------------------------------- the real jasypt

NO_JAVA = why_no_java()


@pytest.mark.skipif(NO_JAVA is not None, reason=NO_JAVA or "")
@pytest.mark.parametrize(
    ("algorithm", "random_iv"),
    [
        ("PBEWITHHMACSHA512ANDAES_256", True),
        ("PBEWithMD5AndDES", False),
        ("PBEWithMD5AndDES", True),
    ],
)
def test_live_round_trip_with_java_jasypt(algorithm: str, random_iv: bool) -> None:
    """Python's output decrypts in jasypt, and jasypt's fresh output decrypts in Python."""
    password, text = "round-trip password", "jdbc:postgresql://db/app?pw=s3cr3t ✓"
    jasypt = Jasypt(password, algorithm, random_iv=random_iv)
    assert run(DECRYPT, jasypt.encrypt(text), password, algorithm, 1000, random_iv) == text
    assert jasypt.decrypt(run(ENCRYPT, text, password, algorithm, 1000, random_iv)) == text
