"""Check that two demo runs wrote the same artifacts, apart from provenance timestamps and timings.

A refactor that promises no change in behaviour proves it here: the demo's outputs before and after
it must be byte-identical once the values that record *when* and *how long* are set aside.

    # run the quick demo at two revisions (temporary git worktrees) and compare
    python benchmarks/demo_identity.py --before e23021a --after HEAD
    # or compare two output folders that already exist
    python benchmarks/demo_identity.py --compare demo_a demo_b

What is set aside, and nothing else:
- JSON / JSONL keys that record time (``created``, ``seconds``, ``minutes``, ``elapsed``, …) and
  the absolute output folder;
- timestamps and durations in HTML / Markdown text, and the checksums of files that hold them;
- TensorBoard event files (their records carry wall-clock times; ``metrics.jsonl`` holds the same
  scalars and is compared);
- the gzip header of ``.nii.gz`` files (the payload is compared), ``train_state.pt`` pickles
  (their tensors are compared) and TorchScript archives (their weights and code are compared,
  not the source paths they embed); a file that matches this way may have other bytes, so the
  SHA-256 that other artifacts record of it is mapped to the reference run's;
- the folder the package's presets are installed in;
- the reader study's random draw (study id, tokens, item ids and presentation order: drawn from
  a cryptographic source on purpose): its key is compared as a set of entries, its study file
  without the raters' tokens and assignments, its leak check without the rule on presentation
  position, and its image folders as a multiset of image bytes.

Exit code 0 when every file matches, 1 otherwise (the differing files are listed).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

VOLATILE_KEYS = {
    "created", "seconds", "minutes", "elapsed", "elapsed_s", "wall_s", "wall_seconds", "time",
    "timestamp", "started", "finished", "duration", "items_per_s", "items_per_second", "throughput",
    "steps_per_s", "samples_per_s", "stages", "out", "report", "path_abs", "wall_time", "hostname",
    "timings_s",
}
TIME_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(\.\d+)?(\+\d{2}:\d{2}|Z)?"  # ISO timestamps
    r"|\d+(\.\d+)?\s*(s|min|seconds|minutes)\b"  # durations
)
SKIP = re.compile(r"(^|/)events\.out\.tfevents\.|(^|/)demo\.json$")
CHECKSUM_FILES = {"SHA256SUMS"}
RANDOM_NAMED = re.compile(r"reader_study/images/[0-9a-f]{16,}/")
RANDOM_ID_FILES = re.compile(r"reader_study/[^/]+\.json$")
HEX_ID = re.compile(r"(?<![.\w])(?=[0-9a-f]*[a-f])[0-9a-f]{16,}\b")  # not the digits of a number
PRESET_DIR = "/uterosynth/configs/"  # where the package's presets are installed
STRUCTURED = (".json", ".html", ".md", ".csv", ".txt")


def _canonical_ids(text: str) -> str:
    """Replace random hex identifiers by their order of first appearance."""
    seen: dict[str, str] = {}
    return HEX_ID.sub(lambda m: seen.setdefault(m.group(0), f"<id{len(seen)}>"), text)


def _scrub(value: Any, root: str) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, root) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_scrub(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<out>")
    return value


def _torch_state(path: Path) -> Any:
    import torch

    with zipfile.ZipFile(path) as archive:
        scripted = any(n.endswith("/constants.pkl") for n in archive.namelist())
    if scripted:  # TorchScript: weights and code, without the source file names it embeds
        module = torch.jit.load(str(path), map_location="cpu")
        return {"state": module.state_dict(), "code": module.code}
    return torch.load(path, map_location="cpu", weights_only=False)


def _same_obj(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - VOLATILE_KEYS
        return all(k in a and k in b and _same_obj(a[k], b[k]) for k in keys)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_obj(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) if not hasattr(a, "shape") else bool((a == b).all())


def _unroot_presets(text: str) -> str:
    """``/any/where/uterosynth/configs/x.yaml`` -> ``<presets>/x.yaml`` (linear time)."""
    parts, end = [], 0
    while (hit := text.find(PRESET_DIR, end)) >= 0:
        start = hit
        while start > end and not text[start - 1].isspace() and text[start - 1] not in "\"'=":
            start -= 1
        parts += [text[end:start], "<presets>/"]
        end = hit + len(PRESET_DIR)
    return "".join(parts) + text[end:]


def _read(path: Path, aliases: dict[str, str], random_ids: bool) -> str:
    text = _unroot_presets(path.read_text(errors="replace"))
    for new, old in aliases.items():
        text = text.replace(new, old).replace(new[:12], old[:12])
    return _canonical_ids(text) if random_ids else text


def _reader_study_view(value: Any, name: str) -> Any:
    """What of a reader-study file does not follow its random draw (ids, tokens, presentation order).

    ``key.json``: the set of (source, class, origin) entries; ``study.json``: all but the raters'
    tokens and assignments; ``check.json``: all but the rule on presentation position.
    """
    if name == "key.json":
        return sorted(json.dumps(v, sort_keys=True) for v in value["items"].values())
    drop = {"study.json": {"study_id", "admin_token_sha256", "raters"}, "check.json": {"study_id"}}.get(name, set())
    value = {k: v for k, v in value.items() if k not in drop}
    if name == "check.json":
        value["rules"] = [r for r in value["rules"] if r.get("rule") != "position"]
    return value


def same_file(a: Path, b: Path, root_a: str, root_b: str, aliases: dict[str, str] | None = None) -> bool:
    """Whether two artifact files agree once time, location and mapped hashes are set aside."""
    name, aliases = a.name, aliases or {}
    random_ids = bool(RANDOM_ID_FILES.search(a.as_posix()))
    if random_ids and name.endswith(".json"):
        view_a = _reader_study_view(_scrub(json.loads(a.read_text()), root_a), name)
        view_b = _reader_study_view(_scrub(json.loads(b.read_text()), root_b), name)
        return view_a == view_b
    if name.endswith(".json"):
        text_a, text_b = _read(a, {}, random_ids), _read(b, aliases, random_ids)
        return _scrub(json.loads(text_a), root_a) == _scrub(json.loads(text_b), root_b)
    if name.endswith(".jsonl"):
        rows_a = [_scrub(json.loads(x), root_a) for x in _read(a, {}, False).splitlines() if x.strip()]
        rows_b = [_scrub(json.loads(x), root_b) for x in _read(b, aliases, False).splitlines() if x.strip()]
        return rows_a == rows_b
    if name.endswith(".gz"):
        return gzip.decompress(a.read_bytes()) == gzip.decompress(b.read_bytes())
    if name.endswith(".pt"):
        return _same_obj(_torch_state(a), _torch_state(b))
    if name.endswith((".html", ".md", ".csv", ".txt")):
        scrub = TIME_TEXT.sub
        text_a = scrub("<t>", _read(a, {}, random_ids).replace(root_a, "<out>"))
        text_b = scrub("<t>", _read(b, aliases, random_ids).replace(root_b, "<out>"))
        return text_a == text_b
    return a.read_bytes() == b.read_bytes()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(dir_a: Path, dir_b: Path) -> list[str]:
    """Differences between two demo output folders, one line each (empty when identical)."""
    files_a = {p.relative_to(dir_a).as_posix() for p in dir_a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(dir_b).as_posix() for p in dir_b.rglob("*") if p.is_file()}
    problems = [f"only in {dir_a}: {f}" for f in sorted(files_a - files_b) if not SKIP.search(f)]
    problems += [f"only in {dir_b}: {f}" for f in sorted(files_b - files_a) if not SKIP.search(f)]
    common = sorted(f for f in files_a & files_b if not SKIP.search(f) and Path(f).name not in CHECKSUM_FILES)
    random_a = sorted(_digest(dir_a / f) for f in files_a if RANDOM_NAMED.search(f))
    random_b = sorted(_digest(dir_b / f) for f in files_b if RANDOM_NAMED.search(f))
    if random_a != random_b:
        problems.append("differs: the reader study's images (as a multiset)")
    problems = [p for p in problems if not RANDOM_NAMED.search(p)]
    # files that others refer to by hash first, so their hashes can be mapped
    aliases: dict[str, str] = {}
    for rel in sorted(common, key=lambda f: f.endswith(STRUCTURED)):
        if RANDOM_NAMED.search(rel):
            continue
        a, b = dir_a / rel, dir_b / rel
        if not same_file(a, b, str(dir_a), str(dir_b), aliases):
            problems.append(f"differs: {rel}")
        elif (old := _digest(a)) != (new := _digest(b)):  # same content, other bytes: map its hash
            aliases[new] = old
    return problems


def run_demo(rev: str, out: Path, demo_args: list[str]) -> None:
    """Run ``uterosynth demo`` from revision ``rev`` (a temporary worktree) into ``out``."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="uterosynth-rev-") as tree:
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", tree, rev], check=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(Path(tree) / "src")}
            cmd = [sys.executable, "-m", "uterosynth", "demo", *demo_args, "--out", str(out)]
            subprocess.run(cmd, check=True, cwd=tree, env=env)
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", tree], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision of the reference run")
    parser.add_argument("--after", default="HEAD", help="git revision of the run to check")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("DIR_A", "DIR_B"))
    parser.add_argument("--demo-args", default="--quick", help="arguments passed to `uterosynth demo`")
    parser.add_argument("--work", type=Path, help="where the two runs are written (default: a temp folder)")
    args = parser.parse_args()
    if args.compare:
        dir_a, dir_b = args.compare
    elif args.before:
        work = args.work or Path(tempfile.mkdtemp(prefix="uterosynth-identity-"))
        dir_a, dir_b = work / "before", work / "after"
        run_demo(args.before, dir_a, args.demo_args.split())
        run_demo(args.after, dir_b, args.demo_args.split())
    else:
        parser.error("give --before REV [--after REV] or --compare DIR_A DIR_B")
    problems = compare(dir_a, dir_b)
    for line in problems:
        print(line)
    n = sum(1 for p in dir_a.rglob("*") if p.is_file())
    print(f"{'identical' if not problems else f'{len(problems)} difference(s)'}: {dir_a} vs {dir_b} ({n} files)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
