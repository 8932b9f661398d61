<#
.SYNOPSIS
    Runs one bobosync pass for Windows Task Scheduler and returns its exit code.

.DESCRIPTION
    - Runs from the folder holding this script (the bobosync checkout).
    - Python: .venv\Scripts\python.exe in that folder if present, else "py -3", else "python".
    - Runs "python -m bobosync" (plus "--env-file PATH" when -EnvFile is given): one pass.
    - Appends the pass's console output (stdout and stderr) to
      logs\wrapper\bobo_wrapper_YYYY-MM-DD.log and deletes wrapper logs older than 7 days.
      bobosync's own log (LOG_DIRECTORY\bobo_processor.log) is written by bobosync itself.
    - A pass still running after -TimeoutMinutes is stopped with its process tree
      (taskkill /T /F) and the script exits 3. Stopping a pass this way is safe: the lock is
      released by Windows and the next pass finishes any half-done file move.
    - Overlapping runs are prevented by bobosync's own lock (a second run logs "another
      bobosync run holds the lock" and exits 0), not by this script.

    Exit codes: 0 all done (or another run holds the lock), 1 something left for the next pass
    or AtHoc failed, 2 configuration error (all from bobosync itself); 3 the pass was stopped
    after -TimeoutMinutes; 4 the pass could not be started (no Python found, or Windows refused
    to start it) or this script itself failed (for example it cannot create logs\wrapper).

    Works with Windows PowerShell 5.1 and PowerShell 7. Keep this file ASCII-only: Windows
    PowerShell 5.1 reads a file without a byte-order mark in the ANSI code page.

.PARAMETER TimeoutMinutes
    Stop a pass that runs longer than this (default 10). Keep it below the Task Scheduler
    setting "Stop the task if it runs longer than".

.PARAMETER EnvFile
    The .env file to use (passed as --env-file). Default: bobosync's own search (.env in this folder).

.EXAMPLE
    powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File C:\bobosync\run_bobo_windows.ps1 -TimeoutMinutes 10
#>
[CmdletBinding()]
param(
    [ValidateRange(1, 1440)]
    [int]$TimeoutMinutes = 10,

    [string]$EnvFile = ''
)

$ErrorActionPreference = 'Stop'

$ExitTimedOut = 3
$ExitNotStarted = 4
$KeepDays = 7

trap {
    # Anything unexpected in this script itself (a folder it cannot create, ...): exit 4, so that
    # it is never mistaken for one of bobosync's own exit codes.
    $message = 'wrapper error: ' + $_.Exception.Message + '; exit 4'
    try { Write-WrapperLog $message } catch { Write-Warning $message }
    exit 4
}

$Root = $PSScriptRoot
Set-Location -LiteralPath $Root

$LogDir = Join-Path $Root 'logs\wrapper'
if (-not (Test-Path -LiteralPath $LogDir)) {
    New-Item -ItemType Directory -Path $LogDir -Force | Out-Null
}
$LogFile = Join-Path $LogDir ('bobo_wrapper_' + (Get-Date -Format 'yyyy-MM-dd') + '.log')

function Write-WrapperLog {
    param([string]$Message)
    $line = '{0} [wrapper {1}] {2}' -f (Get-Date -Format 'yyyy-MM-dd HH:mm:ss'), $PID, $Message
    try {
        Add-Content -LiteralPath $LogFile -Value $line -Encoding UTF8
    } catch {
        # The log is shared with other runs; a locked file must not stop the pass.
        Write-Warning $line
    }
}

function Add-OutputToLog {
    param([string]$Path, [string]$Stream)
    if (-not (Test-Path -LiteralPath $Path)) { return }
    $lines = @(Get-Content -LiteralPath $Path -Encoding UTF8)
    if ($lines.Count -eq 0) { return }
    $tagged = $lines | ForEach-Object { '    ' + $Stream + ': ' + $_ }
    try {
        Add-Content -LiteralPath $LogFile -Value $tagged -Encoding UTF8
    } catch {
        Write-Warning ('could not append the pass output to ' + $LogFile)
    }
}

function Remove-OldWrapperLogs {
    $cutoff = (Get-Date).AddDays(-$KeepDays)
    Get-ChildItem -LiteralPath $LogDir -File -ErrorAction SilentlyContinue |
        Where-Object { ($_.Name -like 'bobo_wrapper_*.log' -or $_.Name -like 'run_*.tmp') -and $_.LastWriteTime -lt $cutoff } |
        Remove-Item -Force -ErrorAction SilentlyContinue
}

function Find-Python {
    # Returns @(executable, leading arguments) or $null.
    $venvPython = Join-Path $Root '.venv\Scripts\python.exe'
    if (Test-Path -LiteralPath $venvPython) { return @($venvPython, '') }
    # Skips the WindowsApps "python.exe" stub that only offers to install Python from the Store.
    $launcher = Get-Command 'py.exe' -CommandType Application -ErrorAction SilentlyContinue |
        Where-Object { $_.Path -notlike '*\WindowsApps\*' } | Select-Object -First 1
    if ($launcher) { return @($launcher.Path, '-3 ') }
    $python = Get-Command 'python.exe' -CommandType Application -ErrorAction SilentlyContinue |
        Where-Object { $_.Path -notlike '*\WindowsApps\*' } | Select-Object -First 1
    if ($python) { return @($python.Path, '') }
    return $null
}

function Format-Argument {
    param([string]$Value)
    # Start-Process joins arguments with spaces and does not quote them (Windows PowerShell 5.1).
    if ($Value -match '[\s"]') { return '"' + $Value.TrimEnd('\') + '"' }
    return $Value
}

Remove-OldWrapperLogs

$found = Find-Python
if ($null -eq $found) {
    Write-WrapperLog 'no Python found: neither .venv\Scripts\python.exe here nor py.exe or python.exe on PATH; exit 4'
    exit $ExitNotStarted
}
$pythonExe = $found[0]
$arguments = $found[1] + '-m bobosync'
if ($EnvFile -ne '') {
    $arguments = $arguments + ' --env-file ' + (Format-Argument $EnvFile)
}

# bobosync's console output in UTF-8, whatever the system code page.
$env:PYTHONIOENCODING = 'utf-8'

$stamp = '{0}_{1}' -f $PID, (Get-Date -Format 'HHmmss')
$outFile = Join-Path $LogDir ('run_' + $stamp + '.stdout.tmp')
$errFile = Join-Path $LogDir ('run_' + $stamp + '.stderr.tmp')

Write-WrapperLog ('start: "' + $pythonExe + '" ' + $arguments + ' (timeout ' + $TimeoutMinutes + ' min)')
$code = $ExitNotStarted
try {
    try {
        $proc = Start-Process -FilePath $pythonExe -ArgumentList $arguments -WorkingDirectory $Root `
            -NoNewWindow -PassThru -RedirectStandardOutput $outFile -RedirectStandardError $errFile
    } catch {
        Write-WrapperLog ('could not start the pass: ' + $_.Exception.Message + '; exit 4')
        exit $ExitNotStarted
    }
    # Reading Handle now keeps ExitCode available after the process ends (Windows PowerShell 5.1).
    $null = $proc.Handle
    if ($proc.WaitForExit($TimeoutMinutes * 60 * 1000)) {
        $proc.WaitForExit()
        $code = $proc.ExitCode
        if ($null -eq $code) { $code = $ExitNotStarted }
        Add-OutputToLog -Path $errFile -Stream 'stderr'
        Add-OutputToLog -Path $outFile -Stream 'stdout'
        Write-WrapperLog ('end: exit code ' + $code)
    } else {
        Write-WrapperLog ('the pass (process ' + $proc.Id + ') is still running after ' + $TimeoutMinutes +
            ' min: stopping it and its child processes; exit 3')
        # cmd.exe merges taskkill's error output: Windows PowerShell 5.1 would turn it into an error.
        $killed = & cmd.exe /d /c ('taskkill.exe /T /F /PID ' + $proc.Id + ' 2>&1')
        $killed | ForEach-Object { Write-WrapperLog ('taskkill: ' + $_) }
        $null = $proc.WaitForExit(30000)
        Add-OutputToLog -Path $errFile -Stream 'stderr'
        Add-OutputToLog -Path $outFile -Stream 'stdout'
        $code = $ExitTimedOut
    }
} catch {
    Write-WrapperLog ('wrapper error: ' + $_.Exception.Message + '; exit 4')
    $code = $ExitNotStarted
} finally {
    Remove-Item -LiteralPath $outFile, $errFile -Force -ErrorAction SilentlyContinue
}
exit $code
