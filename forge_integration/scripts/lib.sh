# Shared by prepare.sh and finish.sh (sourced after PROG is set): error handling, logging, and a
# git whose output goes to stderr so stdout carries only the AGENTPR_* lines.
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$1" >&2; exit "${2:-1}"; }
trap 'rc=$?; printf "%s: error: command failed (exit %s): %s\n" "$PROG" "$rc" "$BASH_COMMAND" >&2; exit "$rc"' ERR
g() { git "$@" >&2; }
# An identity variable set but empty makes git refuse to commit; treat it as unset.
for v in GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL; do
  if [[ -n ${!v+x} && -z ${!v} ]]; then unset "$v"; fi
done
