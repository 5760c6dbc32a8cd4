"""METEOR 1.5 through the official jar (``-l en -norm``, multi-reference), as the DSTC-7 evaluation runs it.

There is deliberately no fallback: without the jar the score is ``None`` (NLTK's METEOR is an older
variant that scores much higher and must not be reported under this name).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

_FINAL = re.compile(r"Final score:\s*([-+0-9.eE]+)")


class MeteorError(RuntimeError):
    pass


def meteor_command(
    jar: str, hyp_path: str, refs_path: str, n_refs: int, java: str = "java", heap: str = "2g"
):
    return [java, f"-Xmx{heap}", "-jar", jar, hyp_path, refs_path, "-r", str(n_refs), "-l", "en", "-norm"]


def meteor_score(
    hyps: Sequence[str],
    ref_sets: Sequence[Sequence[str]],
    jar: str,
    java: str = "java",
    timeout: float | None = None,
) -> float:
    """Run the METEOR 1.5 jar on the hypotheses and all reference sets; returns its "Final score"."""
    if not os.path.isfile(jar):
        raise MeteorError(f"METEOR jar not found: {jar} (download meteor-1.5.jar from the METEOR site)")
    if shutil.which(java) is None:
        raise MeteorError(f"'{java}' not found: METEOR needs a Java runtime")
    for k, refs in enumerate(ref_sets):
        if len(refs) != len(hyps):
            raise ValueError(f"reference set {k} has {len(refs)} lines, the hypotheses have {len(hyps)}")
    with tempfile.TemporaryDirectory(prefix="dialogsmith-meteor-") as tmp:
        hyp_path = os.path.join(tmp, "hyp.txt")
        refs_path = os.path.join(tmp, "refs_merged.txt")
        with open(hyp_path, "w", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in hyps))
        # The jar's multi-reference layout: the refs of line j are consecutive lines (ref0_j, ref1_j, ...).
        with open(refs_path, "w", encoding="utf-8") as f:
            for j in range(len(hyps)):
                for refs in ref_sets:
                    f.write(refs[j] + "\n")
        cmd = meteor_command(jar, hyp_path, refs_path, len(ref_sets), java)
        # The jar finds its paraphrase tables next to itself: run it from its own directory.
        proc = subprocess.run(
            cmd, cwd=os.path.dirname(os.path.abspath(jar)), capture_output=True, text=True, timeout=timeout
        )
    m = _FINAL.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        raise MeteorError(
            f"METEOR failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return float(m.group(1))
