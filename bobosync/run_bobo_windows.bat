@echo off
rem The original bobosync's wrapper path, kept so that existing scheduled tasks keep working:
rem runs the top-level run_bobo_windows.bat (one folder up) for one pass and returns its exit
rem code (0 all done, 1 work left for the next pass, 2 configuration error, 3 stopped after
rem -TimeoutMinutes, 4 not started). The original took no parameters; any given are passed on.
setlocal
call "%~dp0..\run_bobo_windows.bat" %*
exit /b %ERRORLEVEL%
