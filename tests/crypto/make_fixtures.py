"""Write tests/crypto/jasypt_fixtures.json: values encrypted by the real jasypt (Java).

    python -m tests.crypto.make_fixtures     # needs java and libjasypt-java

The suite checks that aioapollo decrypts every one of them, without Java.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from .jasypt import ENCRYPT, jasypt_jar, run

OUT = Path(__file__).with_name("jasypt_fixtures.json")
PASSWORD = "correct horse battery staple"
TEXTS = [
    "s3cr3t",
    "jdbc:mysql://db.internal:3306/app?user=app&password=p@ss w0rd=",
    "pässwörd ✓ 密码",
    "x" * 100,
]
#: (algorithm, iterations, random IV, password)
SETTINGS = [
    ("PBEWITHHMACSHA512ANDAES_256", 1000, True, PASSWORD),  # jasypt-spring-boot 3.x
    ("PBEWithMD5AndDES", 1000, False, PASSWORD),  # jasypt-spring-boot 2.x
    ("PBEWithMD5AndDES", 1000, True, PASSWORD),  # 3.x configured with the old algorithm
    ("PBEWITHHMACSHA256ANDAES_128", 2000, True, PASSWORD),
]


def jar_version() -> str:
    jar = jasypt_jar()
    assert jar is not None
    with zipfile.ZipFile(jar) as z:
        for name in z.namelist():
            if name.endswith("/pom.properties"):
                for line in z.read(name).decode().splitlines():
                    if line.startswith("version="):
                        return line.removeprefix("version=")
    return "(version unknown)"


def main() -> None:
    version = subprocess.run(
        ["java", "-version"], capture_output=True, text=True, check=True
    ).stderr.splitlines()[0]
    cases = []
    for algorithm, iterations, iv, password in SETTINGS:
        for text in TEXTS:
            ciphertext = run(ENCRYPT, text, password, algorithm, iterations, iv)
            cases.append(
                {
                    "algorithm": algorithm,
                    "iterations": iterations,
                    "random_iv": iv,
                    "password": password,
                    "plain": text,
                    "encrypted": ciphertext,
                }
            )
    made_by = f"jasypt {jar_version()} command-line tools on {version}"
    OUT.write_text(
        json.dumps({"made_by": made_by, "cases": cases}, ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8",
    )
    sys.stdout.write(f"wrote {len(cases)} cases to {OUT.name}\n")


if __name__ == "__main__":
    main()
