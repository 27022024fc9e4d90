# shellcheck shell=bash
# Shared by the scripts that build or run dssync (scripts/test, demo and fuzz,
# scripts/bench/* and scripts/studies/*); sourced, not run: from scripts/ as
# "$(dirname "${BASH_SOURCE[0]}")/common.sh", from its subdirectories as
# "$(dirname "${BASH_SOURCE[0]}")/../common.sh".
# Expects `set -euo pipefail` in the caller.

DSSYNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DSSYNC_JOBS="${DSSYNC_JOBS:-$(nproc)}"

# Never wait for input: nothing below may read from a terminal.
exec </dev/null
export DEBIAN_FRONTEND=noninteractive

dssync_banner() {
  printf '\n==== %s ====\n' "$*"
}

# The packages named in a list file (comments and blank lines dropped).
dssync_packages() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$1" | grep -v '^$'
}

# dssync_install_packages <list file>: installs whatever the list names and
# the machine lacks, with apt-get; touches neither the network nor the package
# lists when everything is present.
dssync_install_packages() {
  local list="$1" missing=() pkg
  # The list is read in a process substitution, whose failure set -e does not see.
  if [[ ! -r "$list" ]]; then
    echo "no package list $list" >&2
    return 1
  fi
  while read -r pkg; do
    # dpkg -s alone also succeeds for removed packages whose config files remain.
    if ! dpkg -s "$pkg" 2>/dev/null | grep -qx 'Status: install ok installed'; then
      missing+=("$pkg")
    fi
  done < <(dssync_packages "$list")
  if ((${#missing[@]} == 0)); then
    echo "all packages from ${list#"$DSSYNC_ROOT"/} are installed"
    return 0
  fi
  echo "installing: ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then
    sudo=(sudo -n)
  fi
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# dssync_configure <build dir> [cmake args...]: configures with Ninja. Re-running
# it on a configured tree only re-applies the arguments (a second or so).
dssync_configure() {
  local dir="$1"
  shift
  local cache="$dir/CMakeCache.txt"
  if [[ -f "$cache" ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$cache"; then
    echo "error: $dir was configured with another generator than Ninja;" \
         "remove it or set DSSYNC_BUILD_DIR to another directory" >&2
    return 1
  fi
  cmake -S "$DSSYNC_ROOT" -B "$dir" -G Ninja "$@"
}

# dssync_build DIR [--target NAME...]: builds DIR (every target by default).
dssync_build() {
  local dir="$1"
  shift
  cmake --build "$dir" --parallel "$DSSYNC_JOBS" "$@"
}
