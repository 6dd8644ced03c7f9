#!/bin/sh
# Install bpftrace and tcpwdist on Debian 12 or 13 (Ubuntu: the same packages, untested), as root:
#
#   sh scripts/install.sh            (from the source tree)
#
# Everything comes from the distribution's packages, so it works on a
# host with no pip and a PEP 668 ("externally managed") Python: apt gives
# bpftrace and tcpwdist's three libraries; tcpwdist itself goes into its
# own venv, $TCPWDIST_PREFIX (default /opt/tcpwdist), that sees them.
# `tcpwdist` is linked into /usr/local/bin, which is on root's PATH and
# in sudo's secure_path, and the man page is installed where man(1)
# looks.  Nothing is fetched from PyPI.  Running it again reinstalls.
#
# Uninstall:
#   rm -rf /opt/tcpwdist /usr/local/bin/tcpwdist /usr/local/share/man/man8/tcpwdist.8
set -eu
cd "$(dirname "$0")/.."
prefix=${TCPWDIST_PREFIX:-/opt/tcpwdist}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run it as root (sudo sh scripts/install.sh)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# python3-setuptools and python3-wheel build tcpwdist without fetching
# them; man-db is man(1) itself (a minimal install has none).
apt-get install -y -qq --no-install-recommends bpftrace python3 python3-venv \
    python3-pexpect python3-pyparsing python3-tabulate python3-setuptools python3-wheel \
    man-db >/dev/null
# The distribution's interpreter, whatever `python3` is first on PATH.
/usr/bin/python3 -m venv --system-site-packages "$prefix"
"$prefix/bin/python3" -m pip install -q --no-index --no-deps --no-build-isolation \
    --force-reinstall --disable-pip-version-check .
ln -sf "$prefix/bin/tcpwdist" /usr/local/bin/tcpwdist
install -D -m 0644 man/man8/tcpwdist.8 /usr/local/share/man/man8/tcpwdist.8
echo "installed: $(/usr/local/bin/tcpwdist --version), $(bpftrace --version)," \
    "man page $(man -w tcpwdist)"
