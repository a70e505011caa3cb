#!/usr/bin/env bash
# Install Debian packages for the test suite: `bash .ci/apt-install.sh WHAT PACKAGE...`.
# Runs apt-get as root, or through sudo; WHAT names the purpose in the messages.
set -euo pipefail

what=$1
shift
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "$what: not installed, and installing it needs root (or sudo)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
