#!/usr/bin/env python3
"""Dependency vulnerability review from the package index's project JSON: a stand-in for pip-audit here.

pip-audit cannot work here: PyPI's per-version endpoint (/pypi/<name>/<version>/json) answers 404 and
OSV (api.osv.dev) is unreachable. The project endpoint (/pypi/<name>/json) is reachable; it gives the
latest version, every release's files (with `yanked`), and `vulnerabilities`: the advisories that
affect the LATEST version only. So, for each pinned or installed `name==version`:

- vulnerable              the pin is the latest version and the latest has (non-withdrawn) advisories
- yanked                  every file of the pinned version is yanked
- outdated-unverifiable   the pin is not the latest: the registry says nothing about that version, so
                          whether it is affected cannot be checked from here (the latest's advisories are shown)
- ok                      the pin is the latest version and it has no advisories
- error                   the project could not be fetched, or the pinned version is not on the index

The index is the environment's own, found as pip and uv find it (first found wins): PIP_INDEX_URL,
UV_INDEX_URL, UV_DEFAULT_INDEX; `pip config get global.index-url` (the running interpreter's pip); uv's
configuration (UV_CONFIG_FILE, else the project's uv.toml or pyproject.toml [tool.uv] from the repository
upward, else the user's and the system's uv.toml): `[[index]]` with `default = true`, or `index-url`;
else PyPI. The JSON API sits beside the simple index (https://host/simple -> https://host/pypi).

Usage: .venv/bin/python tools/audit_pins.py [--requirements FILE ...] [--installed] [--json OUT]
                                            [--index-url URL] [--timeout S] [--workers N]
Exit status: 1 if anything is vulnerable or yanked; 2 if every request failed (no network) or on a usage
error; 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# The index when the environment configures none; the only index address in this tool.
DEFAULT_SIMPLE_INDEX_URL = "https://pypi.org/simple"
# pip's, then uv's variables naming the default index (uv's are equivalent; UV_INDEX_URL is the older name).
INDEX_ENV_VARIABLES = ("PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
USER_AGENT = "dataplatform-audit-pins/1.0 (Python urllib)"
# Table order: what needs action first.
STATUSES = ("vulnerable", "yanked", "error", "outdated-unverifiable", "ok")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503) name
    version: str
    source: str  # "requirements.txt:12" or "installed"


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed_in: tuple[str, ...]
    link: str


@dataclass
class Result:
    name: str
    pinned: str
    latest: str | None
    status: str
    # vulnerable: the advisories affecting the pin; outdated-unverifiable / yanked: the latest's, for context.
    advisories: list[Advisory] = field(default_factory=list)
    note: str = ""
    sources: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# Pure logic: no network, no file system.


def _strip_comment(line: str) -> str:
    # pip's rule: `#` starts a comment at line start or after whitespace (a URL fragment `x#egg=` is not one).
    return re.sub(r"(^|\s)#.*$", "", line).strip()


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, text) with backslash continuations joined, as pip reads requirement files."""
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not buffer:
            start = number
        line = _strip_comment(raw) if not buffer else raw.strip()
        if line.endswith("\\"):
            buffer.append(line[:-1])
            continue
        buffer.append(line)
        yield start, _strip_comment(" ".join(buffer))
        buffer = []
    if buffer:
        yield start, _strip_comment(" ".join(buffer))


def pinned_version(requirement: str) -> tuple[str, str] | None:
    """(canonical name, version) of a `name[extras]==version [; marker]` requirement, else None.

    `==1.*` and ranges are not pins (they do not name one release), nor are URL requirements.
    """
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        return None
    if parsed.url:
        return None
    for spec in parsed.specifier:
        if spec.operator in ("==", "===") and not spec.version.endswith("*"):
            return canonicalize_name(parsed.name), spec.version
    return None


def parse_requirements(text: str, source: str) -> tuple[list[Pin], list[str]]:
    """Pins of a requirements file, and its requirement lines that are not pinned (reported, not audited).

    Skipped: blank lines, comments, option lines (`-r`, `-e`, `--index-url`, ...). Per-requirement options
    such as `--hash=...` after a requirement are dropped.
    """
    pins: list[Pin] = []
    unpinned: list[str] = []
    for number, line in _logical_lines(text):
        if not line or line.startswith("-"):
            continue
        requirement = re.split(r"\s--", line, maxsplit=1)[0].strip()
        found = pinned_version(requirement)
        if found is None:
            unpinned.append(f"{source}:{number}: {requirement}")
        else:
            pins.append(Pin(found[0], found[1], f"{source}:{number}"))
    return pins, unpinned


def _version_key(version: str) -> str:
    # PEP 440 normal form (`1.0.0-RC1` -> `1.0.0rc1`) for grouping and sorting.
    try:
        return str(Version(version))
    except InvalidVersion:
        return version


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def group_pins(pins: Iterable[Pin]) -> dict[tuple[str, str], list[Pin]]:
    """One entry per (canonical name, normalised version), keeping every place it was pinned."""
    groups: dict[tuple[str, str], list[Pin]] = {}
    for pin in pins:
        name = canonicalize_name(pin.name)
        # str(Version) keeps trailing zeros (1.0 vs 1.0.0), so equal releases are matched by comparison.
        key = next(
            (k for k in groups if k[0] == name and same_version(k[1], pin.version)), (name, _version_key(pin.version))
        )
        groups.setdefault(key, []).append(pin)
    return groups


def release_files(releases: Mapping[str, Any], version: str) -> list[dict[str, Any]] | None:
    """The files of `version` in a project's `releases`, matching `1.0` to `1.0.0`; None if not released."""
    if version in releases:
        return list(releases[version] or [])
    for key, files in releases.items():
        if same_version(key, version):
            return list(files or [])
    return None


def active_advisories(payload: Mapping[str, Any]) -> list[Advisory]:
    """The latest version's advisories, without withdrawn ones (withdrawn = the advisory was retracted)."""
    advisories: list[Advisory] = []
    for item in payload.get("vulnerabilities") or []:
        if item.get("withdrawn"):
            continue
        advisory = Advisory(
            id=str(item.get("id") or "?"),
            aliases=tuple(item.get("aliases") or ()),
            summary=str(item.get("summary") or item.get("details") or "").strip(),
            fixed_in=tuple(item.get("fixed_in") or ()),
            link=str(item.get("link") or ""),
        )
        # PyPI lists one flaw once per database (PYSEC-x and GHSA-y, aliases of each other): report it once.
        names = {advisory.id, *advisory.aliases}
        for index, kept in enumerate(advisories):
            if names & {kept.id, *kept.aliases}:
                merged = tuple(dict.fromkeys(kept.fixed_in + advisory.fixed_in))
                advisories[index] = Advisory(kept.id, kept.aliases, kept.summary, merged, kept.link)
                break
        else:
            advisories.append(advisory)
    return advisories


def classify(name: str, version: str, payload: Mapping[str, Any]) -> Result:
    """Classify one pin against its project's JSON payload (see the module docstring for the statuses)."""
    latest = (payload.get("info") or {}).get("version")
    if not latest:
        return Result(name, version, None, "error", note="the index's answer has no info.version")
    files = release_files(payload.get("releases") or {}, version)
    if files is None:
        return Result(name, version, latest, "error", note=f"{version} is not among the index's releases")
    advisories = active_advisories(payload)
    is_latest = same_version(version, latest)
    # A release without files cannot be "all yanked": nothing was published to yank.
    yanked = bool(files) and all(f.get("yanked") for f in files)
    reasons = sorted({str(f.get("yanked_reason")) for f in files if f.get("yanked_reason")})
    no_fix = [a.id for a in advisories if not a.fixed_in]

    if is_latest and advisories:
        notes = ["also yanked"] if yanked else []
        if no_fix:
            notes.append(f"no fixed version published for {', '.join(no_fix)}")
        return Result(name, version, latest, "vulnerable", advisories, "; ".join(notes))
    if yanked:
        note = "yanked" + (f": {'; '.join(reasons)}" if reasons else " (no reason given)")
        return Result(name, version, latest, "yanked", advisories if is_latest else [], note)
    if not is_latest:
        newer = _is_newer(version, latest)
        where = "newer than the index's latest (pre-release?)" if newer else f"latest is {latest}"
        if advisories:
            note = f"{where}; the latest itself has advisories"
            if no_fix:
                note += f", with no fixed version published for {', '.join(no_fix)}"
        else:
            note = f"{where}; no advisories for the latest"
        return Result(name, version, latest, "outdated-unverifiable", advisories, note)
    return Result(name, version, latest, "ok")


def _is_newer(version: str, latest: str) -> bool:
    try:
        return Version(version) > Version(latest)
    except InvalidVersion:
        return False


def _cell(text: str) -> str:
    # Markdown tables break on `|` and newlines inside a cell.
    return text.replace("|", "\\|").replace("\n", " ")


def format_advisories(result: Result) -> str:
    """The table's advisories column: ids with aliases and fixed versions, then the note."""
    parts = []
    for advisory in result.advisories:
        aliases = f" [{', '.join(advisory.aliases)}]" if advisory.aliases else ""
        fixed = ", ".join(advisory.fixed_in) if advisory.fixed_in else "none"
        parts.append(f"{advisory.id}{aliases} (fixed in: {fixed})")
    if result.note:
        parts.append(result.note)
    return "; ".join(parts) if parts else "none"


def sort_results(results: Iterable[Result]) -> list[Result]:
    return sorted(results, key=lambda r: (STATUSES.index(r.status), r.name, _version_key(r.pinned)))


def render_table(results: Iterable[Result]) -> str:
    lines = ["| package | pinned | latest | status | advisories |", "|---|---|---|---|---|"]
    for r in sort_results(results):
        cells = (r.name, r.pinned, r.latest or "?", r.status, format_advisories(r))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def count_statuses(results: Iterable[Result]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for r in results:
        counts[r.status] += 1
    return counts


def summary_line(results: Sequence[Result]) -> str:
    counts = count_statuses(results)
    order = ("vulnerable", "yanked", "outdated-unverifiable", "ok", "error")
    return f"audit_pins: {len(results)} packages: " + ", ".join(f"{counts[s]} {s}" for s in order)


def exit_code(results: Sequence[Result]) -> int:
    if results and all(r.status == "error" for r in results):
        return 2
    return 1 if any(r.status in ("vulnerable", "yanked") for r in results) else 0


# ---------------------------------------------------------------------------------------------------------
# I/O: the index, installed distributions, files.


def json_api_base(index_url: str) -> str:
    """The JSON API base of an index URL. Warehouse (PyPI) and its mirrors serve /simple/<name>/ and
    /pypi/<name>/json side by side, so a URL ending in /simple maps to /pypi; any other URL is taken to be
    the JSON API base itself."""
    base = index_url.rstrip("/")
    head, _, last = base.rpartition("/")
    return f"{head}/pypi" if last == "simple" and head else base


def redact(url: str) -> str:
    """The URL without its password: a configured index URL may carry a token, and the tool prints it."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def pip_config_index_url(environ: Mapping[str, str], python: str = sys.executable) -> str | None:
    """`global.index-url` of pip's configuration files, as that interpreter's pip reads them (PIP_CONFIG_FILE,
    site, user and global files); None if unset or if pip is not installed."""
    try:
        done = subprocess.run(
            [python, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
            env=dict(environ),
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def _uv_settings(path: Path) -> Mapping[str, Any] | None:
    """uv's settings in a uv.toml (the whole file) or a pyproject.toml ([tool.uv]); None if it has none."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if path.name == "pyproject.toml":
        return data.get("tool", {}).get("uv")
    return data


def uv_config_files(environ: Mapping[str, str], start: Path) -> list[Path]:
    """uv's configuration files in precedence order: UV_CONFIG_FILE alone if set (uv then ignores the rest);
    else the nearest directory from `start` upward holding a uv.toml or a pyproject.toml with [tool.uv]
    (a uv.toml there hides the pyproject.toml's [tool.uv], as in uv), then the user's ($XDG_CONFIG_HOME or
    ~/.config) and the system's uv.toml."""
    if environ.get("UV_NO_CONFIG"):
        return []
    if environ.get("UV_CONFIG_FILE"):
        return [Path(environ["UV_CONFIG_FILE"])]
    files: list[Path] = []
    for directory in (start, *start.parents):
        found = [
            directory / name for name in ("uv.toml", "pyproject.toml") if _uv_settings(directory / name) is not None
        ]
        if found:
            files.append(found[0])
            break
    home = Path(environ.get("HOME") or Path.home())
    files.append(Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "uv" / "uv.toml")
    files += [Path(d) / "uv" / "uv.toml" for d in (environ.get("XDG_CONFIG_DIRS") or "/etc").split(":") if d]
    return files


def uv_config_index_url(environ: Mapping[str, str], start: Path) -> tuple[str, Path] | None:
    """The default index of uv's configuration and the file naming it: an `[[index]]` with `default = true`,
    else the older `index-url`, from the first file (in uv's precedence) that sets either."""
    for path in uv_config_files(environ, start):
        settings = _uv_settings(path) or {}
        default = [i["url"] for i in settings.get("index") or [] if i.get("default") and i.get("url")]
        url = default[0] if default else settings.get("index-url")
        if url:
            return str(url), path
    return None


def configured_index_url(environ: Mapping[str, str], start: Path = REPO_ROOT) -> tuple[str, str]:
    """(simple index URL, where it was found): environment variables, pip's configuration, uv's, else PyPI."""
    for variable in INDEX_ENV_VARIABLES:
        if environ.get(variable, "").strip():
            return environ[variable].strip(), variable
    pip_url = pip_config_index_url(environ)
    if pip_url:
        return pip_url, "pip config global.index-url"
    uv = uv_config_index_url(environ, start)
    if uv:
        return uv[0], str(uv[1])
    return DEFAULT_SIMPLE_INDEX_URL, "default"


class FetchError(Exception):
    pass


def fetch_project(index_url: str, name: str, timeout: float, attempts: int = 2) -> dict[str, Any]:
    url = f"{index_url.rstrip('/')}/{name}/json"
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    last = "no attempt made"
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} from {url}"
            if exc.code < 500:  # 404 = not on this index: retrying will not change that
                break
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)} ({url})"
        except ValueError as exc:  # a body that is not JSON
            last = f"invalid JSON from {url}: {exc}"
            break
        if attempt + 1 < attempts:
            time.sleep(0.5 * (attempt + 1))
    raise FetchError(last)


def fetch_all(names: Iterable[str], index_url: str, timeout: float, workers: int) -> dict[str, dict[str, Any] | str]:
    """Project JSON per name, or the error message; each project once, however many versions are pinned."""
    unique = sorted(set(names))

    def one(name: str) -> dict[str, Any] | str:
        try:
            return fetch_project(index_url, name, timeout)
        except FetchError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique) or 1))) as pool:
        return dict(zip(unique, pool.map(one, unique), strict=True))


def installed_pins() -> tuple[list[Pin], list[str]]:
    """Every distribution of the running environment; those installed from a local folder or VCS are skipped
    (their version is not a release of the index, and a same-named index project would be someone else's)."""
    pins: list[Pin] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        canonical = canonicalize_name(name)
        if canonical in seen:  # the same name twice on sys.path: the first one is what imports
            continue
        seen.add(canonical)
        direct = dist.read_text("direct_url.json")
        if direct:
            try:
                origin = json.loads(direct)
            except ValueError:
                origin = {}
            if "dir_info" in origin or "vcs_info" in origin or str(origin.get("url", "")).startswith("file:"):
                skipped.append(f"{canonical} {dist.version} (installed from {origin.get('url', 'a local path')})")
                continue
        pins.append(Pin(canonical, dist.version, "installed"))
    return pins, skipped


def audit(pins: Sequence[Pin], index_url: str, timeout: float, workers: int) -> list[Result]:
    groups = group_pins(pins)
    payloads = fetch_all((name for name, _ in groups), index_url, timeout, workers)
    results = []
    for (name, _), members in groups.items():
        version = members[0].version
        payload = payloads[name]
        if isinstance(payload, str):
            result = Result(name, version, None, "error", note=payload)
        else:
            result = classify(name, version, payload)
        result.sources = [m.source for m in members]
        results.append(result)
    return sort_results(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Audit pinned requirements (and optionally the installed environment) against the package "
        "index's project JSON: advisories of the latest version, yanked releases, outdated pins."
    )
    parser.add_argument(
        "--requirements",
        nargs="+",
        metavar="FILE",
        help="requirements files (default: requirements.txt requirements-dev.txt in the repository root)",
    )
    parser.add_argument("--installed", action="store_true", help="also audit every installed distribution")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument(
        "--index-url",
        help="the index: a simple-index URL (.../simple, whose JSON API is .../pypi) or a JSON API base "
        "(default: the environment's pip/uv configuration, else PyPI)",
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per request (default 20)")
    parser.add_argument("--workers", type=int, default=8, help="parallel requests (default 8)")
    parser.add_argument("--quiet", action="store_true", help="table rows only for packages that are not ok")
    args = parser.parse_args(argv)

    files = [Path(f) for f in args.requirements] if args.requirements else [REPO_ROOT / f for f in DEFAULT_REQUIREMENTS]
    pins: list[Pin] = []
    unpinned: list[str] = []
    for path in files:
        if not path.is_file():
            parser.error(f"no such requirements file: {path}")
        found, loose = parse_requirements(path.read_text(encoding="utf-8"), path.name)
        pins += found
        unpinned += loose
    skipped: list[str] = []
    if args.installed:
        found, skipped = installed_pins()
        pins += found
    if not pins:
        print("audit_pins: nothing to audit (no pinned name==version lines)")
        return 0

    index_url, origin = (args.index_url, "--index-url") if args.index_url else configured_index_url(os.environ)
    api = json_api_base(index_url)
    started = time.monotonic()
    results = audit(pins, api, args.timeout, args.workers)
    elapsed = time.monotonic() - started

    print(render_table([r for r in results if r.status != "ok"] if args.quiet else results))
    print()
    for line in unpinned:
        print(f"not audited (not pinned with ==): {line}")
    for line in skipped:
        print(f"not audited (not from the index): {line}")
    print(f"{summary_line(results)} ({elapsed:.1f}s, {redact(api)}, index from {origin})")
    if any(r.status == "outdated-unverifiable" for r in results):
        print(
            "outdated-unverifiable: the index reports advisories for its latest version only; older pins are unchecked"
        )

    if args.json:
        report = {
            "index_url": redact(api),
            "index_from": origin,
            "counts": count_statuses(results),
            "exit_code": exit_code(results),
            "results": [asdict(r) for r in results],
            "unpinned": unpinned,
            "skipped": skipped,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
