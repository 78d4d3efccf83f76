# Shared by the scripts in bench/: sourced, never run.

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: $*"; exit 1; }
has() { [[ " $2 " == *" $1 "* ]]; }     # has WORD "LIST"

# median V...: the median of the numbers given (mean of the middle two if even).
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) exit 1
          if (NR % 2) print v[(NR + 1) / 2]
          else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ensure_cmd COMMAND DEBIAN_PACKAGE: installs the package when COMMAND is missing,
# so a fresh machine runs the benchmark without a setup step. Logs to $LOGS/apt.log.
ensure_cmd() {
  command -v "$1" >/dev/null && return
  say "bench: installing $2 (log: $LOGS/apt.log)"
  local sudo=; [[ $EUID -eq 0 ]] || sudo=sudo
  mkdir -p "$LOGS"
  {
    [[ -n ${APT_UPDATED:-} ]] || $sudo apt-get update
    APT_UPDATED=1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$2"
  } >>"$LOGS/apt.log" 2>&1 || die "apt-get install $2 failed; log: $LOGS/apt.log"
}
