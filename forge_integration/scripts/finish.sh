#!/usr/bin/env bash
# finish.sh "CHANGES" [PROJECT] [TITLE]
#
# Run inside the clone prepare.sh made, on the feature branch. Commits the work and pushes it:
#   1. title: TITLE, else "PROJECT: CHANGES", else CHANGES; newlines and runs of spaces collapse
#      to one space, trimmed, cut to 72 characters. The full CHANGES text becomes the body when
#      it says more than the title.
#   2. stage: every change in the work tree -- modified, deleted AND new files (a contribution
#      usually adds tests) -- except .agentpr_runtime/ (the worker's caches and reports) and what
#      .gitignore already ignores.
#   3. commit with the configured git identity; when none is configured, a fallback one
#      (AGENTPR_GIT_AUTHOR_NAME / AGENTPR_GIT_AUTHOR_EMAIL, default agentpr <agentpr@localhost>)
#      for this commit only. AGENTPR_FORGE_NO_VERIFY=1 skips the repository's commit hooks.
#   4. push the branch to origin with upstream tracking (--force-with-lease, because prepare.sh
#      may have rebased a branch pushed before).
# Nothing staged but commits not yet pushed: those are pushed. Nothing at all: exit 1.
#
# Environment: AGENTPR_FORGE_PUSH_URL, when set, is the only URL origin may have (url and pushurl);
# anything else is refused before the commit (agentpr passes the URL run-prepare recorded).
#
# Output: progress on stderr; on stdout AGENTPR_TITLE=..., AGENTPR_BRANCH=..., AGENTPR_HEAD_SHA=...
# Exit 0 on success; 2 for bad usage; 1 for anything else, with the reason on the last stderr line.
set -Eeuo pipefail

PROG=finish.sh
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 && $# -le 3 ]] || die 'usage: finish.sh "CHANGES" [PROJECT] [TITLE]' 2
CHANGES=$1
PROJECT=${2:-}
TITLE_IN=${3:-}
MAX_TITLE=72

one_line() { printf '%s' "$1" | tr '\r\n\t' '   ' | tr -s ' ' | sed -e 's/^ *//' -e 's/ *$//'; }

[[ -n $(one_line "$CHANGES") ]] || die 'CHANGES is empty; describe what the commit changes, e.g. finish.sh "Fix typo in README"' 2
command -v git >/dev/null 2>&1 || die "git is not installed or not on PATH; install git"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "$PWD is not inside a git clone; run finish.sh in the clone prepare.sh made"
cd "$(git rev-parse --show-toplevel)"

BRANCH=$(git symbolic-ref --quiet --short HEAD) || die "HEAD is detached in $PWD; check out the feature branch first"
BASE=$(git config --get agentpr.base || true)
if [[ -n $BASE && $BRANCH == "$BASE" ]]; then
  die "refusing to commit on the base branch '$BASE'; run prepare.sh to create a feature branch"
fi
git remote get-url origin >/dev/null 2>&1 || die "the clone in $PWD has no 'origin' remote to push to; run prepare.sh"
PUSH_URL=${AGENTPR_FORGE_PUSH_URL:-}
if [[ -n $PUSH_URL ]]; then
  for key in remote.origin.url remote.origin.pushurl; do
    while IFS= read -r url; do
      [[ -z $url || $url == "$PUSH_URL" ]] || die "$key in $PWD is $url, not $PUSH_URL that run-prepare recorded; refusing to push elsewhere (run run-prepare again)"
    done < <(git config --get-all "$key" || true)
  done
fi
if [[ -d $(git rev-parse --git-path rebase-merge) || -d $(git rev-parse --git-path rebase-apply) || -f $(git rev-parse --git-path MERGE_HEAD) ]]; then
  die "a rebase or merge is in progress in $PWD; finish or abort it first"
fi

if [[ -n $TITLE_IN ]]; then
  TITLE=$(one_line "$TITLE_IN")
elif [[ -n $PROJECT ]]; then
  TITLE=$(one_line "$PROJECT: $CHANGES")
else
  TITLE=$(one_line "$CHANGES")
fi
if (( ${#TITLE} > MAX_TITLE )); then
  TITLE="$(printf '%s' "${TITLE:0:$((MAX_TITLE - 3))}" | sed -e 's/ *$//')..."
fi
[[ -n $TITLE ]] || die "the commit title is empty; pass a non-empty TITLE" 2

g add -A
# Belt and braces for clones prepare.sh did not make (no info/exclude entry): unstage the runtime dir.
if [[ -e .agentpr_runtime ]]; then g reset -q -- .agentpr_runtime; fi

IDENTITY=()
if [[ -z $(git config --get user.name || true) ]]; then IDENTITY+=(-c "user.name=${AGENTPR_GIT_AUTHOR_NAME:-agentpr}"); fi
if [[ -z $(git config --get user.email || true) ]]; then IDENTITY+=(-c "user.email=${AGENTPR_GIT_AUTHOR_EMAIL:-agentpr@localhost}"); fi

if git diff --cached --quiet; then
  UPSTREAM_REF=$(git rev-parse --abbrev-ref --symbolic-full-name '@{upstream}' 2>/dev/null || true)
  if [[ -n $BASE ]] && git rev-parse --verify --quiet "upstream/$BASE" >/dev/null; then
    AHEAD=$(git rev-list --count "upstream/$BASE..HEAD")
  elif [[ -n $UPSTREAM_REF ]]; then
    AHEAD=$(git rev-list --count "$UPSTREAM_REF..HEAD")
  else
    AHEAD=0
  fi
  (( AHEAD > 0 )) || die "nothing to commit on $BRANCH: the work tree has no changes (outside .agentpr_runtime/) and no commits to push"
  log "no new changes; pushing the $AHEAD commit(s) already on $BRANCH"
else
  MSG_FILE=$(mktemp)
  trap 'rm -f "$MSG_FILE"' EXIT
  BODY=$(printf '%s' "$CHANGES" | sed -e 's/[[:space:]]*$//')
  if [[ $(one_line "$CHANGES") == "$TITLE" ]]; then
    printf '%s\n' "$TITLE" >"$MSG_FILE"
  else
    printf '%s\n\n%s\n' "$TITLE" "$BODY" >"$MSG_FILE"
  fi
  VERIFY=()
  if [[ ${AGENTPR_FORGE_NO_VERIFY:-} == 1 ]]; then VERIFY=(--no-verify); fi
  g ${IDENTITY[@]+"${IDENTITY[@]}"} commit ${VERIFY[@]+"${VERIFY[@]}"} -F "$MSG_FILE" || die "git commit failed on $BRANCH (a commit hook may have refused it; see above)"
  log "committed: $TITLE"
fi

# --receive-pack: git's own, whatever a remote.origin.receivepack says.
g push --receive-pack=git-receive-pack --force-with-lease -u origin "HEAD:refs/heads/$BRANCH" \
  || die "git push to origin ($(git remote get-url origin)) failed for $BRANCH; check your access and whether the remote branch moved"

echo "AGENTPR_TITLE=$TITLE"
echo "AGENTPR_BRANCH=$BRANCH"
echo "AGENTPR_HEAD_SHA=$(git rev-parse HEAD)"
