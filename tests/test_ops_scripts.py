"""The operations files agree with the code: the Windows wrappers and their guide, the systemd
unit, the cron line and deploy/README.md.

There is no Windows PowerShell here, so the wrappers are checked statically: every bobosync flag
and subcommand they (and the guides) use is parsed with the CLI's own parser, every repository
path they name exists, the exit codes they document are the CLI's, and the .ps1 holds nothing
Windows PowerShell 5.1 cannot run that can be spotted without running it. The systemd unit goes
through ``systemd-analyze verify`` where that exists; the cron command line is run for real
against the AtHoc simulator."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bobosync.cli import EXIT_CONFIG, EXIT_INCOMPLETE, EXIT_OK, build_parser
from bobosync.settings import load_settings
from bobosync.simulator import AtHocSimulator
from tests.test_e2e import child_env

REPO = Path(__file__).resolve().parent.parent
PS1 = REPO / "run_bobo_windows.ps1"
BAT = REPO / "run_bobo_windows.bat"
GUIDE = REPO / "windows_scheduler_setup.md"
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "bobosync.service"
CRON = DEPLOY / "cron.example"
DEPLOY_README = DEPLOY / "README.md"
DOCS = (GUIDE, DEPLOY_README)
CLI_CODES = {EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG}


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------- the CLI as the arbiter


def cli_options() -> set[str]:
    """Every option string of the parser and of each subcommand, and the subcommand names."""
    found: set[str] = set()
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                found.update(action.choices)
                parsers.extend(action.choices.values())
    return found


def parse(args: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"bobosync rejects {args!r}") from exc


def bobosync_commands(source: str) -> list[list[str]]:
    """The arguments after every ``-m bobosync`` in ``source`` (to the end of the command)."""
    commands = []
    for match in re.finditer(r"-m bobosync\b([^\n`#|\"')<>;&*]*)", source):
        commands.append(match.group(1).split())
    return commands


def test_the_parser_check_itself_can_fail() -> None:
    assert "--watch" in cli_options() and "status" in cli_options() and "--json" in cli_options()
    assert "--no-such-flag" not in cli_options()
    with pytest.raises(AssertionError):
        parse(["--no-such-flag"])
    assert bobosync_commands("x `python -m bobosync --env-file C:\\a\\.env status --live` y") == [
        ["--env-file", "C:\\a\\.env", "status", "--live"]
    ]


@pytest.mark.parametrize("path", [PS1, BAT, GUIDE, DEPLOY_README, UNIT, CRON], ids=lambda p: p.name)
def test_every_bobosync_command_and_flag_used_exists(path: Path) -> None:
    source = text(path)
    commands = bobosync_commands(source)
    for args in commands:
        parse(args)
    if path in (GUIDE, DEPLOY_README):
        assert commands, "the guide shows how to run bobosync"
    # Flags written apart from a full command line: inline code starting with one in the
    # guides (`--env-file`), string literals in the PowerShell script (' --env-file ').
    options = cli_options()
    if path.suffix == ".md":
        loose = re.findall(r"`(--[a-z][a-z-]+)", source)
    elif path.suffix == ".ps1":
        loose = re.findall(r"'[^'\n]*?(--[a-z][a-z-]+)[^'\n]*'", source)
    else:
        loose = []
    for flag in loose:
        assert flag in options, f"{path.name}: {flag} is not a bobosync option"


# ---------------------------------------------------------------- run_bobo_windows.ps1

# PowerShell 7-only syntax: null-coalescing and null-conditional operators, pipeline chain
# operators, the ternary operator; cmdlet parameters and values added after 5.1.
PS7_ONLY = [
    (r"\?\?", "?? / ??= (null-coalescing)"),
    (r"\$\{?\w+\}?\?\.", "?. (null-conditional)"),
    (r"&&|\|\|", "&& / || (pipeline chain)"),
    (r"[\w)\]'\"]\s+\?\s+[^{\s][^:]*\s:\s", "ternary ? :"),
    (r"-Parallel\b", "ForEach-Object -Parallel"),
    (r"-AsByteStream\b", "-AsByteStream"),
    (r"utf8NoBOM", "utf8NoBOM encoding"),
    (r"\$Is(Windows|Linux|MacOS)\b", "$IsWindows and friends"),
    (r"-SkipCertificateCheck\b", "-SkipCertificateCheck"),
    (r"Join-Path\s+(\S+\s+){2}['\"$]", "Join-Path with more than two paths"),
]


def powershell_code(source: str) -> str:
    """The script without comments (block and line), which may say anything."""
    source = re.sub(r"<#.*?#>", "", source, flags=re.S)
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in source.splitlines())


def ps7_constructs(code: str) -> list[str]:
    return [label for pattern, label in PS7_ONLY if re.search(pattern, code)]


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("$x = $a ?? 'b'", True),
        ("$n = $proc?.Id", True),
        ("git pull && git push", True),
        ("$v = $ok ? 'yes' : 'no'", True),
        ("Get-Content $f -AsByteStream", True),
        ("Join-Path $Root 'logs' 'wrapper'", True),
        ("Get-ChildItem | ? { $_.Length -gt 0 }", False),
        ("$LogDir = Join-Path $Root 'logs\\wrapper'", False),
        ("if ($a -and $b) { exit 3 }", False),
    ],
)
def test_the_ps7_detector_itself(line: str, found: bool) -> None:
    assert bool(ps7_constructs(line)) is found


def test_ps1_runs_on_windows_powershell_5_1() -> None:
    raw = PS1.read_bytes()
    assert raw.isascii(), "Windows PowerShell 5.1 reads a .ps1 without BOM in the ANSI code page"
    assert ps7_constructs(powershell_code(text(PS1))) == []
    code = powershell_code(text(PS1))
    assert "Get-Process" not in code  # overlap protection is bobosync's lock, not a process search
    assert "#Requires" not in text(PS1)


def ps1_parameters() -> dict[str, str]:
    block = re.search(r"^param\((.*?)^\)", text(PS1), flags=re.S | re.M)
    assert block is not None
    return dict(re.findall(r"\$(\w+)\s*=\s*([^\s,]+)", block.group(1)))


def test_ps1_runs_one_pass_from_its_folder_with_the_documented_python_and_log() -> None:
    source = text(PS1)
    assert ps1_parameters() == {"TimeoutMinutes": "10", "EnvFile": "''"}
    assert "Set-Location -LiteralPath $Root" in source and "$Root = $PSScriptRoot" in source
    # Python: the checkout's venv, then the py launcher, then python, in that order.
    order = [source.index(s) for s in ("'.venv\\Scripts\\python.exe'", "'py.exe'", "'-3 '", "'python.exe'")]
    assert order == sorted(order)
    # The arguments it builds are one plain pass, with --env-file when given.
    assert "'-m bobosync'" in source and "' --env-file '" in source
    one_pass = parse(["--env-file", "C:\\bobosync\\prod.env"])
    assert one_pass.command is None and not (one_pass.watch or one_pass.dry_run or one_pass.sync_users)
    # The wrapper log and its retention, as documented in the guide.
    assert "Join-Path $Root 'logs\\wrapper'" in source
    assert "'bobo_wrapper_' + (Get-Date -Format 'yyyy-MM-dd') + '.log'" in source
    assert "$KeepDays = 7" in source
    assert "logs\\wrapper\\bobo_wrapper_YYYY-MM-DD.log" in text(GUIDE)
    assert "keeps 7 days" in text(GUIDE)
    # The timeout stops the whole process tree and the script returns the pass's code.
    assert "WaitForExit($TimeoutMinutes * 60 * 1000)" in source
    assert "taskkill.exe /T /F /PID" in source
    assert "-RedirectStandardOutput" in source and "-RedirectStandardError" in source
    assert source.rstrip().endswith("exit $code")


def wrapper_codes() -> dict[str, int]:
    return {name: int(value) for name, value in re.findall(r"^\$(Exit\w+) = (\d+)$", text(PS1), flags=re.M)}


def test_exit_codes_are_the_clis_plus_two_of_the_wrapper() -> None:
    codes = wrapper_codes()
    assert codes == {"ExitTimedOut": 3, "ExitNotStarted": 4}
    assert not CLI_CODES & set(codes.values())
    assert (EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG) == (0, 1, 2)
    # The guide's table: every code once, hex matching, each from the right place.
    rows = re.findall(r"^\| (\d+) \((0x[0-9A-F]+)\) \| [^|]+ \| ([\w ]+) \|$", text(GUIDE), flags=re.M)
    assert rows, "the exit code table"
    documented: dict[str, set[int]] = {}
    for code, hexcode, origin in rows:
        assert int(code) == int(hexcode, 16)
        documented.setdefault(origin, set()).add(int(code))
    assert documented["bobosync"] == CLI_CODES
    assert documented["wrapper"] == set(codes.values())
    # The same codes in the scripts' own help text and in deploy/README.md.
    assert "Exit codes: 0 all done" in text(PS1) and "3 the pass was stopped" in text(PS1)
    assert "3 stopped after -TimeoutMinutes, 4 not started" in text(BAT)
    deploy_rows = {int(c) for c in re.findall(r"^\| (\d) \| ", text(DEPLOY_README), flags=re.M)}
    assert deploy_rows == CLI_CODES


# ---------------------------------------------------------------- run_bobo_windows.bat


def assert_cmd_file(path: Path) -> None:
    """ASCII with CRLF line ends, as cmd.exe wants."""
    raw = path.read_bytes()
    assert raw.isascii()
    lines = raw.split(b"\n")
    assert all(line.endswith(b"\r") for line in lines[:-1]) and lines[-1] == b"", "cmd.exe wants CRLF"


def test_bat_calls_the_ps1_beside_it_and_returns_its_code() -> None:
    assert_cmd_file(BAT)
    source = text(BAT)
    call = re.search(r'^powershell\.exe (.*) -File "%~dp0([^"]+)" %\*\r?$', source, flags=re.M)
    assert call is not None
    assert (REPO / call.group(2)).is_file()
    assert "-ExecutionPolicy Bypass" in call.group(1) and "-NoProfile" in call.group(1)
    assert source.rstrip().endswith("exit /b %ERRORLEVEL%")


def test_wrapper_parameters_used_in_the_guide_and_the_bat_exist() -> None:
    params = set(ps1_parameters())
    used: set[str] = set()
    for source in (text(GUIDE), text(BAT)):
        for line in source.splitlines():
            if "run_bobo_windows." in line:
                after = line.split("run_bobo_windows.", 1)[1]
                used.update(re.findall(r"(?<![\w-])-([A-Z][A-Za-z]+)\b", after))
    used -= {"ExecutionPolicy", "NoProfile", "NonInteractive", "File", "WorkingDirectory"}
    assert used, "the guide shows the wrapper's parameters"
    assert used <= params


# ---------------------------------------------------------------- paths named in the docs exist


def test_markdown_links_resolve() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)", text(doc)):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name}: link {target}"


def test_install_paths_that_point_into_the_checkout_exist() -> None:
    # C:\bobosync\... (the guide) and /opt/bobosync/... (deploy/) are the checkout; what the
    # install creates (.venv, .env, data, logs) is not in the repository.
    created = (".venv", ".env", "data", "logs")
    named: set[str] = set()
    for match in re.finditer(r"C:\\bobosync\\([\w.\\-]+)", text(GUIDE)):
        named.add(match.group(1).replace("\\", "/"))
    for path in (UNIT, CRON, DEPLOY_README):
        named.update(re.findall(r"/opt/bobosync/([\w./-]+)", text(path)))
    checked = {n.rstrip("./") for n in named if n.split("/")[0] not in created}
    assert {
        "run_bobo_windows.ps1",
        "run_bobo_windows.bat",
        ".env_safe",
        "deploy/bobosync.service",
        "deploy/cron.example",
        "deploy/README.md",
    } <= checked
    for name in checked:
        assert (REPO / name).exists(), name


# ---------------------------------------------------------------- systemd


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) for every setting line of the unit."""
    entries, section = [], ""
    for line in text(UNIT).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key, value))
    return entries


def unit_value(key: str) -> str:
    values = [v for _, k, v in unit_entries() if k == key]
    assert len(values) == 1, key
    return values[0]


def test_unit_runs_watch_as_a_dedicated_user_and_stops_gracefully() -> None:
    exec_start = shlex.split(unit_value("ExecStart"))
    assert exec_start[:3] == ["/opt/bobosync/.venv/bin/python", "-m", "bobosync"]
    args = parse(exec_start[3:])
    assert args.watch and args.command is None and args.env_file == Path("/etc/bobosync/bobosync.env")
    assert unit_value("WorkingDirectory") == "/opt/bobosync"
    assert unit_value("User") == "bobosync" and unit_value("Type") == "simple"
    assert unit_value("Restart") in ("always", "on-failure")
    assert unit_value("RestartPreventExitStatus") == str(EXIT_CONFIG)
    assert unit_value("KillSignal") == "SIGTERM" and int(unit_value("TimeoutStopSec")) >= 120
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "RestrictSUIDSGID"):
        assert unit_value(hardening) == "yes"
    assert unit_value("ProtectSystem") == "strict"


def writable_paths() -> list[Path]:
    return [
        Path("/var/lib") / unit_value("StateDirectory"),
        Path("/var/log") / unit_value("LogsDirectory"),
        *(Path(p) for p in unit_value("ReadWritePaths").split()),
    ]


def test_the_documented_settings_paths_are_writable_under_the_unit(tmp_path: Path) -> None:
    block = re.search(r"```ini\n(.*?)```", text(DEPLOY_README), flags=re.S)
    assert block is not None
    values = dict(line.split("=", 1) for line in block.group(1).splitlines() if "=" in line)
    documented_names = set(re.findall(r"^#?\s*([A-Z_]+)=", text(REPO / ".env_safe"), flags=re.M))
    assert set(values) <= documented_names
    env = tmp_path / "bobosync.env"
    env.write_text(
        "ATHOC_SERVER_URL=https://athoc.example\nCLIENT_ID=c\nCLIENT_SECRET=s\nAPIUSER=u\nPASSWORD=p\n"
        "ORG_CODE=O\n" + block.group(1),
        encoding="utf-8",
    )
    settings = load_settings(env_file=env, environ={})
    writable = writable_paths()
    for path in (
        settings.csv_directory,
        settings.processed_directory,
        settings.failed_files_directory,
        settings.db_path.parent,
        settings.lock_path.parent,
        settings.log_directory,
    ):
        assert path.is_absolute()
        assert any(path == w or w in path.parents for w in writable), f"{path} is read-only under the unit"
    assert unit_value("RequiresMountsFor") == unit_value("ReadWritePaths")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart's program exists: point it at this Python, nothing else changes.
    unit = tmp_path / "bobosync.service"
    unit.write_text(text(UNIT).replace("/opt/bobosync/.venv/bin/python", sys.executable), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "bobosync" in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


# ---------------------------------------------------------------- cron


def cron_line() -> tuple[list[str], str, str]:
    lines = [
        line
        for line in text(CRON).splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)
    ]
    assert len(lines) == 1
    fields = lines[0].split(None, 6)
    return fields[:5], fields[5], fields[6]


def test_cron_line_runs_one_pass_every_minute_with_the_units_paths() -> None:
    schedule, user, command = cron_line()
    assert schedule == ["*"] * 5 and user == unit_value("User")
    (args,) = bobosync_commands(command)
    parsed = parse(args)
    assert parsed.command is None and not parsed.watch
    exec_start = shlex.split(unit_value("ExecStart"))
    assert exec_start[0] in command and str(parsed.env_file) == exec_start[-1]
    assert "flock" not in command  # bobosync's own lock does that


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_cron_command_runs_a_pass(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    _, _, command = cron_line()
    logs = tmp_path / "cronlogs"
    logs.mkdir()
    for installed, here in (
        ("/opt/bobosync/.venv/bin/python", sys.executable),
        ("/etc/bobosync/bobosync.env", str(tmp_path / ".env")),
        ("/var/log/bobosync", str(logs)),
        ("/opt/bobosync", str(REPO)),
    ):
        assert installed in command
        command = command.replace(installed, shlex.quote(here))
    result = subprocess.run(["sh", "-c", command], env=child_env(), capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == result.stderr == ""  # everything went to cron.log
    assert "pass ok" in (logs / "cron.log").read_text(encoding="utf-8")
    assert simulator.tokens_issued == 1


# ---------------------------------------------------------------- the original's wrapper paths

LEGACY_PS1 = REPO / "bobosync" / "run_bobo_windows.ps1"
LEGACY_BAT = REPO / "bobosync" / "run_bobo_windows.bat"
#: The original bobosync\run_bobo_windows.ps1's parameters with their defaults, as scheduled
#: tasks made for it may pass them.
ORIGINAL_PS1_PARAMETERS = {
    "ScriptPath": "[string]$PSScriptRoot",
    "LogPath": '[string]"../logs"',
    "TimeoutMinutes": "[int]30",
}


def typed_parameters(path: Path) -> dict[str, str]:
    block = re.search(r"^param\((.*?)^\)", text(path), flags=re.S | re.M)
    assert block is not None, path
    return {
        name: f"[{kind}]{default}"
        for kind, name, default in re.findall(r"\[(\w+)\]\$(\w+)\s*=\s*([^\s,]+)", block.group(1))
    }


def test_legacy_ps1_takes_the_originals_parameters() -> None:
    assert typed_parameters(LEGACY_PS1) == ORIGINAL_PS1_PARAMETERS
    assert typed_parameters(PS1) != ORIGINAL_PS1_PARAMETERS  # the parser check can fail


def test_legacy_ps1_forwards_to_the_top_level_wrapper_and_returns_its_code() -> None:
    raw = LEGACY_PS1.read_bytes()
    assert raw.isascii()
    code = powershell_code(text(LEGACY_PS1))
    assert ps7_constructs(code) == []
    assert "$Root = Split-Path -Parent $PSScriptRoot" in code
    top = re.search(r"\$Top = Join-Path \$Root '([^']+)'", code)
    assert top is not None and (LEGACY_PS1.parent.parent / top.group(1)) == PS1
    # Only parameters the top-level wrapper has are forwarded, and its exit code is returned.
    forwarded = set(re.findall(r"\$Forward\['(\w+)'\]|(\w+) = \$TimeoutMinutes", code))
    assert {name for pair in forwarded for name in pair if name} <= set(ps1_parameters())
    assert re.search(r"^& \$Top @Forward\r?$", code, flags=re.M)
    assert code.rstrip().endswith("exit $LASTEXITCODE")
    assert "exit 0" not in code  # the original returned 0 whatever the pass did


def test_legacy_bat_calls_the_top_level_bat_and_returns_its_code() -> None:
    assert_cmd_file(LEGACY_BAT)
    source = text(LEGACY_BAT)
    call = re.search(r'^call "%~dp0\.\.\\([^"]+)" %\*\r?$', source, flags=re.M)
    assert call is not None and (LEGACY_BAT.parent.parent / call.group(1)) == BAT
    assert source.rstrip().endswith("exit /b %ERRORLEVEL%")
    assert "myenv" not in source  # the original's venv lacks bobosync's dependencies


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="PowerShell (pwsh) is not installed")
def test_legacy_ps1_parses_under_pwsh() -> None:
    check = (
        "$errors = $null; [System.Management.Automation.Language.Parser]::ParseFile("
        f"'{LEGACY_PS1}', [ref]$null, [ref]$errors) | Out-Null; exit $errors.Count"
    )
    assert subprocess.run(["pwsh", "-NoProfile", "-Command", check], timeout=120).returncode == 0
