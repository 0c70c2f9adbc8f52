# Process identity for start-all.sh and stop-all.sh (sourced, never run): a pid file holds
# PID START ARGS, and a PID is signalled only while its start time and arguments still match.

start_time() {  # field 22 of /proc/PID/stat (the fields after "(comm) " start at field 3)
  local stat f=()
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  read -ra f <<< "${stat##*) }"
  echo "${f[19]:-}"
}
running() {  # alive, not a zombie
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "${stat##*) }" != Z* ]]
}
cmdline() {
  local a=() IFS=' '
  mapfile -d '' a < "/proc/$1/cmdline" 2>/dev/null || return 1
  [ "${#a[@]}" -gt 0 ] && echo "${a[*]}"
}
