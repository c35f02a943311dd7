#!/bin/sh
# @NAME@: see `dbtool @COMMAND@ --help`. Written by `dbtool init`; runs the installed dbtool
# (pipx or pip install of dbtool, on PATH; $DBTOOL names another one).
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd -P)
DBTOOL_PROJECT_ROOT=${DBTOOL_PROJECT_ROOT:-"$root"}
export DBTOOL_PROJECT_ROOT
dbtool=${DBTOOL:-dbtool}
if ! command -v "$dbtool" >/dev/null 2>&1; then
    echo "error: $dbtool is not installed (pipx install a dbtool checkout or wheel, or set DBTOOL to its path)" >&2
    exit 1
fi
exec "$dbtool" @COMMAND@ "$@"
