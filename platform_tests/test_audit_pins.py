"""tools/audit_pins.py: the pure logic on hand-written PyPI project payloads, and main() against a local index.

No test here reaches the network: the end-to-end tests serve canned JSON from 127.0.0.1.
"""

import importlib.util
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "audit_pins.py"


def _load_tool() -> ModuleType:
    # tools/ is not a package: load the script by path. Registered in sys.modules first because dataclasses
    # resolve the module's (string) annotations through it.
    spec = importlib.util.spec_from_file_location("audit_pins", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_pins"] = module
    spec.loader.exec_module(module)
    return module


audit_pins = _load_tool()


def release(yanked: bool = False, reason: str | None = None) -> list[dict[str, Any]]:
    """The files of one release: a wheel and an sdist, both (not) yanked."""
    return [
        {
            "filename": f"x-{kind}",
            "upload_time_iso_8601": "2026-01-01T00:00:00Z",
            "yanked": yanked,
            "yanked_reason": reason,
        }
        for kind in ("wheel", "sdist")
    ]


def advisory(id_: str, fixed_in: list[str] | None = None, withdrawn: str | None = None) -> dict[str, Any]:
    return {
        "id": id_,
        "aliases": [f"CVE-{id_}"],
        "summary": None,
        "details": f"details of {id_}",
        "fixed_in": fixed_in or [],
        "link": f"https://osv.dev/vulnerability/{id_}",
        "source": "osv",
        "withdrawn": withdrawn,
    }


def payload(
    latest: str, releases: dict[str, list[dict[str, Any]]], vulnerabilities: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"info": {"name": "x", "version": latest}, "releases": releases, "vulnerabilities": vulnerabilities or []}


# --- requirements parsing ------------------------------------------------------------------------------------

REQUIREMENTS = """\
# a comment line
-r requirements.txt
-e .
--index-url https://example.invalid/simple

Dagster_AWS==0.29.27  # inline comment
moto[server]==5.2.5
baz==2.0 ; python_version < "3.13"
hashed==1.4 \\
    --hash=sha256:0123456789abcdef
ranged>=1.0,<2
wild==1.*
floating
direct @ https://example.invalid/direct-1.0.tar.gz#egg=direct
exact===3.0
"""


def test_parse_requirements_pins_comments_options_extras_markers_hashes() -> None:
    pins, unpinned = audit_pins.parse_requirements(REQUIREMENTS, "req.txt")
    assert [(p.name, p.version, p.source) for p in pins] == [
        ("dagster-aws", "0.29.27", "req.txt:6"),
        ("moto", "5.2.5", "req.txt:7"),
        ("baz", "2.0", "req.txt:8"),
        ("hashed", "1.4", "req.txt:9"),
        ("exact", "3.0", "req.txt:15"),
    ]
    # Requirements that do not name one release are listed as not audited, never silently dropped.
    assert [line.split(": ", 1)[1] for line in unpinned] == [
        "ranged>=1.0,<2",
        "wild==1.*",
        "floating",
        "direct @ https://example.invalid/direct-1.0.tar.gz#egg=direct",
    ]


def test_repository_requirement_files_parse_with_every_line_pinned() -> None:
    root = TOOL.parents[1]
    for name in audit_pins.DEFAULT_REQUIREMENTS:
        pins, unpinned = audit_pins.parse_requirements((root / name).read_text(), name)
        assert pins and unpinned == [], name


def test_names_normalise_and_pins_of_one_release_group_together() -> None:
    pins, _ = audit_pins.parse_requirements("Dagster_AWS==0.29.27\ndagster-aws==0.29.27\nDAGSTER.aws==0.29.28\n", "r")
    groups = audit_pins.group_pins(pins)
    assert list(groups) == [("dagster-aws", "0.29.27"), ("dagster-aws", "0.29.28")]
    assert [p.source for p in groups[("dagster-aws", "0.29.27")]] == ["r:1", "r:2"]
    # Versions normalise too: 1.0 and 1.0.0 are one release.
    same = audit_pins.group_pins([audit_pins.Pin("a", "1.0", "x"), audit_pins.Pin("A", "1.0.0", "installed")])
    assert len(same) == 1


# --- classification ------------------------------------------------------------------------------------------


def test_latest_with_advisories_is_vulnerable_and_lists_ids_and_fixes() -> None:
    data = payload(
        "2.6.1",
        {"2.6.0": release(), "2.6.1": release()},
        [advisory("PYSEC-2017-94"), advisory("PYSEC-2099-1", fixed_in=["2.5.9"])],
    )
    result = audit_pins.classify("pycrypto", "2.6.1", data)
    assert result.status == "vulnerable"
    assert [(a.id, a.fixed_in) for a in result.advisories] == [("PYSEC-2017-94", ()), ("PYSEC-2099-1", ("2.5.9",))]
    assert "no fixed version published for PYSEC-2017-94" in result.note
    assert audit_pins.exit_code([result]) == 1


def test_one_flaw_listed_by_two_databases_is_reported_once() -> None:
    pysec = advisory("PYSEC-2017-94") | {"aliases": ["CVE-2013-7459", "GHSA-cq27"]}
    ghsa = advisory("GHSA-cq27", fixed_in=["3.0"]) | {"aliases": ["CVE-2013-7459", "PYSEC-2017-94"]}
    other = advisory("PYSEC-2018-97")
    found = audit_pins.active_advisories(payload("1.0", {"1.0": release()}, [pysec, ghsa, other]))
    assert [(a.id, a.fixed_in) for a in found] == [("PYSEC-2017-94", ("3.0",)), ("PYSEC-2018-97", ())]


def test_withdrawn_advisory_is_ignored() -> None:
    data = payload("1.0", {"1.0": release()}, [advisory("GHSA-old", withdrawn="2025-01-01T00:00:00Z")])
    result = audit_pins.classify("pkg", "1.0", data)
    assert (result.status, result.advisories) == ("ok", [])


def test_pin_whose_files_are_all_yanked_is_yanked() -> None:
    data = payload("1.1", {"1.0": release(yanked=True, reason="broken wheel"), "1.1": release()})
    result = audit_pins.classify("pkg", "1.0", data)
    assert result.status == "yanked"
    assert "broken wheel" in result.note
    assert audit_pins.exit_code([result]) == 1


def test_partly_yanked_or_fileless_release_is_not_yanked() -> None:
    partly = release()
    partly[0]["yanked"] = True
    data = payload("1.1", {"1.0": partly, "0.9": [], "1.1": release()})
    assert audit_pins.classify("pkg", "1.0", data).status == "outdated-unverifiable"
    assert audit_pins.classify("pkg", "0.9", data).status == "outdated-unverifiable"


def test_outdated_pin_cannot_be_verified_and_reports_the_latest() -> None:
    data = payload("2.0", {"1.0": release(), "2.0": release()})
    result = audit_pins.classify("pkg", "1.0", data)
    assert (result.status, result.latest, result.advisories) == ("outdated-unverifiable", "2.0", [])
    assert result.note == "latest is 2.0; no advisories for the latest"
    assert audit_pins.exit_code([result]) == 0


def test_outdated_pin_says_when_the_latest_has_advisories_without_a_fix() -> None:
    data = payload("2.0", {"1.0": release(), "2.0": release()}, [advisory("PYSEC-1"), advisory("PYSEC-2", ["1.9.1"])])
    result = audit_pins.classify("pkg", "1.0", data)
    assert result.status == "outdated-unverifiable"
    assert [a.id for a in result.advisories] == ["PYSEC-1", "PYSEC-2"]
    assert "the latest itself has advisories, with no fixed version published for PYSEC-1" in result.note
    assert audit_pins.exit_code([result]) == 0


def test_pin_newer_than_latest_is_unverifiable_too() -> None:
    data = payload("2.0", {"2.0": release(), "2.1rc1": release()})
    result = audit_pins.classify("pkg", "2.1rc1", data)
    assert result.status == "outdated-unverifiable"
    assert "newer than the index's latest" in result.note


def test_latest_without_advisories_is_ok_and_versions_compare_normalised() -> None:
    data = payload("1.0.0", {"1.0.0": release()})
    assert audit_pins.classify("pkg", "1.0.0", data).status == "ok"
    assert audit_pins.classify("pkg", "1.0", data).status == "ok"


def test_version_missing_from_the_index_is_an_error() -> None:
    result = audit_pins.classify("pkg", "9.9", payload("1.0", {"1.0": release()}))
    assert result.status == "error"
    assert "not among the index's releases" in result.note


# --- rendering and exit status -------------------------------------------------------------------------------


def test_table_lists_action_first_and_escapes_pipes() -> None:
    results = [
        audit_pins.Result("okpkg", "1.0", "1.0", "ok"),
        audit_pins.Result("oldpkg", "1.0", "2.0", "outdated-unverifiable", note="latest is 2.0"),
        audit_pins.classify("bad", "1.0", payload("1.0", {"1.0": release()}, [advisory("PYSEC-1", ["1.0.1"])])),
        audit_pins.Result("gone", "1.0", None, "error", note="HTTP 404 | not found"),
    ]
    lines = audit_pins.render_table(results).splitlines()
    assert lines[0] == "| package | pinned | latest | status | advisories |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| bad", "| gone", "| oldpkg", "| okpkg"]
    assert lines[2] == "| bad | 1.0 | 1.0 | vulnerable | PYSEC-1 [CVE-PYSEC-1] (fixed in: 1.0.1) |"
    assert "HTTP 404 \\| not found" in lines[3]
    assert lines[5].endswith("| ok | none |")
    assert audit_pins.summary_line(results) == (
        "audit_pins: 4 packages: 1 vulnerable, 0 yanked, 1 outdated-unverifiable, 1 ok, 1 error"
    )


def test_exit_code() -> None:
    error = audit_pins.Result("a", "1", None, "error")
    ok = audit_pins.Result("b", "1", "1", "ok")
    old = audit_pins.Result("c", "1", "2", "outdated-unverifiable")
    assert audit_pins.exit_code([error, error]) == 2  # no network
    assert audit_pins.exit_code([error, ok, old]) == 0  # one failed request alone is reported, not fatal
    assert audit_pins.exit_code([]) == 0


# --- main() against a local index ----------------------------------------------------------------------------

CANNED = {
    "safe-pkg": payload("1.0", {"1.0": release()}),
    "bad-pkg": payload("3.0", {"3.0": release()}, [advisory("PYSEC-9", withdrawn=None)]),
    "old-pkg": payload("2.0", {"1.0": release(), "2.0": release()}),
}


@pytest.fixture
def local_index() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A warehouse-style index on 127.0.0.1 serving CANNED at /pypi/<name>/json (404 otherwise); yields the
    URL of its simple index (/simple, which this server does not need to serve) and the requests."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "user_agent": self.headers.get("User-Agent", "")})
            parts = self.path.strip("/").split("/")
            body = CANNED.get(parts[1]) if len(parts) == 3 and parts[0] == "pypi" and parts[2] == "json" else None
            if body is None:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", seen
    finally:
        server.shutdown()
        server.server_close()


def test_main_audits_a_requirements_file_against_a_local_index(
    local_index: tuple[str, list[dict[str, str]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = local_index
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# pins\nSafe_Pkg==1.0\nbad-pkg[extra]==3.0\nold-pkg==1.0\nmissing-pkg==0.1\n-r other.txt\n"
    )
    out = tmp_path / "audit.json"

    code = audit_pins.main(["--requirements", str(requirements), "--index-url", url, "--json", str(out)])

    assert code == 1  # bad-pkg is vulnerable
    report = json.loads(out.read_text())
    assert {r["name"]: r["status"] for r in report["results"]} == {
        "bad-pkg": "vulnerable",
        "missing-pkg": "error",
        "old-pkg": "outdated-unverifiable",
        "safe-pkg": "ok",
    }
    assert report["counts"] == {"vulnerable": 1, "yanked": 0, "error": 1, "outdated-unverifiable": 1, "ok": 1}
    printed = capsys.readouterr().out
    assert "| bad-pkg | 3.0 | 3.0 | vulnerable | PYSEC-9 [CVE-PYSEC-9] (fixed in: none)" in printed
    assert "audit_pins: 4 packages: 1 vulnerable, 0 yanked, 1 outdated-unverifiable, 1 ok, 1 error" in printed
    # Canonical names in the URLs, each project once, with a User-Agent.
    paths = ["/pypi/bad-pkg/json", "/pypi/missing-pkg/json", "/pypi/old-pkg/json", "/pypi/safe-pkg/json"]
    assert sorted(r["path"] for r in seen) == paths
    assert all(r["user_agent"].startswith("dataplatform-audit-pins/") for r in seen)


def test_main_exits_2_when_every_request_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("safe-pkg==1.0\nold-pkg==1.0\n")
    # A port bound but not listening: every connection is refused at once, and no other process can take it.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{blocker.getsockname()[1]}"
        code = audit_pins.main(["--requirements", str(requirements), "--index-url", url, "--timeout", "2"])
    assert code == 2
    assert "0 ok, 2 error" in capsys.readouterr().out


# --- which index: the environment's configuration ------------------------------------------------------------


def test_json_api_base_is_derived_from_the_simple_index_url() -> None:
    assert audit_pins.json_api_base("https://mirror.example/simple") == "https://mirror.example/pypi"
    assert audit_pins.json_api_base("https://mirror.example/repo/simple/") == "https://mirror.example/repo/pypi"
    assert audit_pins.json_api_base("https://mirror.example/pypi") == "https://mirror.example/pypi"  # a JSON base
    assert audit_pins.json_api_base(audit_pins.DEFAULT_SIMPLE_INDEX_URL) == "https://pypi.org/pypi"
    # A token in a configured URL is not printed.
    assert (
        audit_pins.redact("https://user:s3cret@mirror.example:8443/pypi") == "https://user:***@mirror.example:8443/pypi"
    )


# Nothing listens on the discard port: were a configuration that must lose used, the audit would exit 2.
DEAD = "http://127.0.0.1:9/simple"


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No index variables, no pip configuration files (pip's documented os.devnull switch), no uv files
    except those a test names: the developer's own configuration must not decide these tests."""
    for variable in (*audit_pins.INDEX_ENV_VARIABLES, "UV_CONFIG_FILE", "UV_NO_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg-system"))
    return monkeypatch


def _audit_safe_pkg(tmp_path: Path) -> dict[str, Any]:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("safe-pkg==1.0\n")
    out = tmp_path / "audit.json"
    assert audit_pins.main(["--requirements", str(requirements), "--json", str(out), "--timeout", "5"]) == 0
    return json.loads(out.read_text())


def test_index_from_the_environment_variable_wins_over_pip_and_uv_configuration(
    local_index: tuple[str, list[dict[str, str]]], clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, seen = local_index
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nindex-url = {DEAD}\n")
    uv_toml = tmp_path / "uv.toml"
    uv_toml.write_text(f'index-url = "{DEAD}"\n')
    clean_environment.setenv("PIP_CONFIG_FILE", str(pip_conf))
    clean_environment.setenv("UV_CONFIG_FILE", str(uv_toml))
    clean_environment.setenv("UV_DEFAULT_INDEX", DEAD)
    clean_environment.setenv("PIP_INDEX_URL", url)

    report = _audit_safe_pkg(tmp_path)

    assert (report["index_url"], report["index_from"]) == (url.removesuffix("/simple") + "/pypi", "PIP_INDEX_URL")
    assert [r["path"] for r in seen] == ["/pypi/safe-pkg/json"]
    # Without pip's variable, uv's come next, UV_INDEX_URL before UV_DEFAULT_INDEX.
    environ = {"UV_DEFAULT_INDEX": DEAD, "UV_INDEX_URL": url}
    assert audit_pins.configured_index_url(environ) == (url, "UV_INDEX_URL")


def test_index_from_the_pip_configuration_file(
    local_index: tuple[str, list[dict[str, str]]], clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, seen = local_index
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nindex-url = {url}\n")
    uv_toml = tmp_path / "uv.toml"
    uv_toml.write_text(f'index-url = "{DEAD}"\n')  # pip's configuration comes before uv's
    clean_environment.setenv("PIP_CONFIG_FILE", str(pip_conf))
    clean_environment.setenv("UV_CONFIG_FILE", str(uv_toml))

    report = _audit_safe_pkg(tmp_path)

    assert report["index_from"] == "pip config global.index-url"
    assert [r["path"] for r in seen] == ["/pypi/safe-pkg/json"]


def test_index_from_the_uv_configuration_file(
    local_index: tuple[str, list[dict[str, str]]], clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, seen = local_index
    uv_toml = tmp_path / "uv.toml"
    # The default [[index]] wins over the older index-url key.
    uv_toml.write_text(
        f'index-url = "{DEAD}"\n[[index]]\nname = "extra"\nurl = "{DEAD}"\n'
        f'[[index]]\nname = "mirror"\nurl = "{url}"\ndefault = true\n'
    )
    clean_environment.setenv("UV_CONFIG_FILE", str(uv_toml))

    report = _audit_safe_pkg(tmp_path)

    assert report["index_from"] == str(uv_toml)
    assert [r["path"] for r in seen] == ["/pypi/safe-pkg/json"]


def test_uv_configuration_is_discovered_as_uv_discovers_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    start = project / "tools"
    start.mkdir(parents=True)
    user = tmp_path / "xdg" / "uv" / "uv.toml"
    user.parent.mkdir(parents=True)
    user.write_text('index-url = "https://user.example/simple"\n')
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CONFIG_DIRS": str(tmp_path / "none")}

    # No project configuration: the user's file.
    assert audit_pins.uv_config_index_url(environ, start) == ("https://user.example/simple", user)
    # A pyproject.toml without [tool.uv] is not uv configuration; one with it, in a parent, is.
    (start / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (project / "pyproject.toml").write_text('[tool.uv]\nindex-url = "https://project.example/simple"\n')
    assert audit_pins.uv_config_index_url(environ, start) == (
        "https://project.example/simple",
        project / "pyproject.toml",
    )
    # A uv.toml beside it hides the pyproject's [tool.uv]; one without an index falls through to the user's.
    (project / "uv.toml").write_text("native-tls = true\n")
    assert audit_pins.uv_config_index_url(environ, start) == ("https://user.example/simple", user)
    # UV_CONFIG_FILE replaces discovery; UV_NO_CONFIG turns it off.
    named = tmp_path / "named.toml"
    named.write_text('[[index]]\nurl = "https://named.example/simple"\ndefault = true\n')
    assert audit_pins.uv_config_index_url(environ | {"UV_CONFIG_FILE": str(named)}, start) == (
        "https://named.example/simple",
        named,
    )
    assert audit_pins.uv_config_index_url(environ | {"UV_NO_CONFIG": "1"}, start) is None


def test_without_configuration_the_index_is_the_named_default(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert audit_pins.configured_index_url(dict(os.environ), tmp_path) == (
        audit_pins.DEFAULT_SIMPLE_INDEX_URL,
        "default",
    )
