"""Running the real jasypt (Java) from tests and from the fixture generator.

jasypt's command-line tools take the password as an argument: fine for throwaway test
passwords, and why aioapollo's own ``encrypt``/``decrypt`` commands never do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

#: Where Debian's libjasypt-java puts the jar; ``JASYPT_JAR`` names another.
DEBIAN_JAR = "/usr/share/java/jasypt.jar"
ENCRYPT = "org.jasypt.intf.cli.JasyptPBEStringEncryptionCLI"
DECRYPT = "org.jasypt.intf.cli.JasyptPBEStringDecryptionCLI"
IV = {True: "org.jasypt.iv.RandomIvGenerator", False: "org.jasypt.iv.NoIvGenerator"}


def jasypt_jar() -> Path | None:
    jar = Path(os.environ.get("JASYPT_JAR") or DEBIAN_JAR)
    return jar if jar.is_file() else None


def why_no_java() -> str | None:
    """None when Java and the jasypt jar are both here; else why not (for a skip)."""
    if shutil.which("java") is None:
        return (
            "no java on PATH: the live jasypt round trip needs Java and jasypt "
            "(apt-get install default-jre-headless libjasypt-java); the committed fixtures "
            "made by real jasypt are checked without them"
        )
    if jasypt_jar() is None:
        return (
            f"no jasypt jar at {os.environ.get('JASYPT_JAR') or DEBIAN_JAR} (set JASYPT_JAR or "
            "apt-get install libjasypt-java); the committed fixtures are checked without it"
        )
    return None


def run(cli: str, text: str, password: str, algorithm: str, iterations: int, iv: bool) -> str:
    """One run of jasypt's CLI; returns its output (the result only, verbose=false)."""
    jar = jasypt_jar()
    assert jar is not None
    args = [
        "java",
        "-Dfile.encoding=UTF-8",
        "-Dsun.stdout.encoding=UTF-8",
        "-Dsun.jnu.encoding=UTF-8",
        "-cp",
        str(jar),
        cli,
        "verbose=false",
        f"input={text}",
        f"password={password}",
        f"algorithm={algorithm}",
        f"keyObtentionIterations={iterations}",
        f"ivGeneratorClassName={IV[iv]}",
    ]
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    done = subprocess.run(args, capture_output=True, env=env, timeout=60, check=False)
    out = done.stdout.decode("utf-8").strip()
    if done.returncode != 0 or not out:
        raise RuntimeError(f"jasypt failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return out
