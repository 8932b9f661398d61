@echo off
rem One bobosync pass for Task Scheduler or a double-click: runs run_bobo_windows.ps1 (beside
rem this file) with Windows PowerShell and returns its exit code. Arguments are passed on,
rem for example:  run_bobo_windows.bat -TimeoutMinutes 15 -EnvFile D:\bobosync\prod.env
rem
rem Exit codes: 0 all done (or another run holds the lock), 1 something left for the next pass
rem or AtHoc failed, 2 configuration error, 3 stopped after -TimeoutMinutes, 4 not started.
rem
rem -ExecutionPolicy Bypass applies to this one process only. Where a Group Policy forbids
rem PowerShell scripts altogether, point Task Scheduler at Python directly instead (see
rem windows_scheduler_setup.md, "Without PowerShell").
setlocal
cd /d "%~dp0"
powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "%~dp0run_bobo_windows.ps1" %*
exit /b %ERRORLEVEL%
