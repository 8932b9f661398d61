<#
.SYNOPSIS
    The original bobosync's wrapper path, kept so that existing scheduled tasks keep working.

.DESCRIPTION
    Scheduled tasks made for the original tool run bobosync\run_bobo_windows.ps1. This script
    accepts the original's parameters and runs the top-level run_bobo_windows.ps1 (one folder
    up) for one pass, then exits with that pass's exit code. The original wrapper exited 0
    whatever Python returned; this one does not (see the exit codes below).

    Exit codes: those of the top-level run_bobo_windows.ps1: 0 all done, 1 something left for
    the next pass or AtHoc failed, 2 configuration error, 3 the pass was stopped after
    -TimeoutMinutes, 4 the pass could not be started or the wrapper itself failed.

    Keep this file ASCII-only: Windows PowerShell 5.1 reads it in the ANSI code page.

.PARAMETER ScriptPath
    The original's folder of bobo_processor.py (default: this folder). When it holds a .env
    file, that file is used (passed on as -EnvFile).

.PARAMETER LogPath
    Accepted for the original's tasks and otherwise unused: the wrapper log is
    logs\wrapper\bobo_wrapper_YYYY-MM-DD.log beside the top-level wrapper, and bobosync's own
    log goes to LOG_DIRECTORY.

.PARAMETER TimeoutMinutes
    Stop a pass that runs longer than this (default 30, the original's default).
#>
param(
    [string]$ScriptPath = $PSScriptRoot,
    [string]$LogPath = "../logs",
    [int]$TimeoutMinutes = 30
)

$ErrorActionPreference = 'Stop'

trap {
    Write-Warning ('wrapper error: ' + $_.Exception.Message + '; exit 4')
    exit 4
}

$Root = Split-Path -Parent $PSScriptRoot
$Top = Join-Path $Root 'run_bobo_windows.ps1'
if (-not (Test-Path -LiteralPath $Top)) {
    Write-Warning ('wrapper error: ' + $Top + ' not found; exit 4')
    exit 4
}
if ($TimeoutMinutes -lt 1) { $TimeoutMinutes = 1 }

$Forward = @{ TimeoutMinutes = $TimeoutMinutes }
$EnvFile = Join-Path $ScriptPath '.env'
if (Test-Path -LiteralPath $EnvFile) { $Forward['EnvFile'] = $EnvFile }

& $Top @Forward
if ($null -eq $LASTEXITCODE) { exit 4 }
exit $LASTEXITCODE
