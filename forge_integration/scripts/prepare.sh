#!/usr/bin/env bash
# prepare.sh OWNER REPO [BASE] [FEATURE]
#
# Get a clone of OWNER/REPO ready for a contribution:
#   1. fork + clone (GitHub CLI `gh`), or any remotes named by AGENTPR_FORGE_UPSTREAM_URL /
#      AGENTPR_FORGE_FORK_URL (the fork is cloned as `origin`, the upstream added as `upstream`),
#      or reuse the clone already there;
#   2. detect the upstream default branch (unless BASE is given) and sync the local BASE to it;
#   3. create the feature branch from upstream/BASE, or rebase it onto upstream/BASE when it
#      already exists (locally or on the fork). Default name: feature/forge-<UTC timestamp>.
#
# Environment:
#   AGENTPR_FORGE_UPSTREAM_URL  upstream remote URL (default https://github.com/OWNER/REPO.git)
#   AGENTPR_FORGE_FORK_URL      the remote to push to; when either URL is set, gh is not used
#   AGENTPR_FORGE_CLONE_DIR     where the clone lives (default ./REPO)
#
# Output: progress and git's own output on stderr; on stdout only machine-readable lines
#   AGENTPR_REPO_DIR=<dir>  AGENTPR_BASE=<branch>  AGENTPR_BASE_SHA=<sha>  AGENTPR_BRANCH=<branch>
# with AGENTPR_BRANCH last. Exit 0 on success; 2 for bad usage; 1 for anything else, with the
# reason on the last stderr line.
set -Eeuo pipefail

PROG=prepare.sh
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: $PROG OWNER REPO [BASE] [FEATURE]" 2; }
[[ $# -ge 2 && $# -le 4 ]] || usage
OWNER=$1
REPO=$2
BASE=${3:-}
FEATURE=${4:-}

[[ $OWNER =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,38}$ ]] || die "OWNER '$OWNER' is not a GitHub owner name (letters, digits, dashes)" 2
[[ $REPO =~ ^[A-Za-z0-9._-]{1,100}$ && $REPO != "." && $REPO != ".." ]] || die "REPO '$REPO' is not a GitHub repository name" 2
command -v git >/dev/null 2>&1 || die "git is not installed or not on PATH; install git"

if [[ -z $FEATURE ]]; then
  FEATURE="feature/forge-$(date -u +%Y%m%d-%H%M%S)"
fi
git check-ref-format --branch "$FEATURE" >/dev/null 2>&1 || die "FEATURE '$FEATURE' is not a valid branch name" 2
if [[ -n $BASE ]]; then
  git check-ref-format --branch "$BASE" >/dev/null 2>&1 || die "BASE '$BASE' is not a valid branch name" 2
fi

CLONE_DIR=${AGENTPR_FORGE_CLONE_DIR:-$PWD/$REPO}
UPSTREAM_URL=${AGENTPR_FORGE_UPSTREAM_URL:-}
FORK_URL=${AGENTPR_FORGE_FORK_URL:-}

# ---- remotes ----------------------------------------------------------------------------------
if [[ -n $UPSTREAM_URL || -n $FORK_URL ]]; then
  [[ -n $FORK_URL ]] || die "AGENTPR_FORGE_UPSTREAM_URL is set but AGENTPR_FORGE_FORK_URL is not; set the remote to push to (it may equal the upstream URL for your own repository)"
  [[ -n $UPSTREAM_URL ]] || UPSTREAM_URL="https://github.com/$OWNER/$REPO.git"
  log "using remotes from the environment: upstream $UPSTREAM_URL, fork $FORK_URL"
elif git -C "$CLONE_DIR" rev-parse --git-dir >/dev/null 2>&1 \
  && git -C "$CLONE_DIR" remote get-url origin >/dev/null 2>&1; then
  log "reusing the remotes of the clone in $CLONE_DIR"
else
  command -v gh >/dev/null 2>&1 || die "no clone in $CLONE_DIR and the GitHub CLI (gh) is not installed; install gh and run 'gh auth login', or set AGENTPR_FORGE_UPSTREAM_URL and AGENTPR_FORGE_FORK_URL"
  LOGIN=$(gh api user --jq .login 2>/dev/null) || die "gh is not logged in; run 'gh auth login' (or set AGENTPR_FORGE_UPSTREAM_URL and AGENTPR_FORGE_FORK_URL)"
  PROTO=$(gh config get git_protocol 2>/dev/null || true)
  url_for() { if [[ $PROTO == ssh ]]; then echo "git@github.com:$1/$2.git"; else echo "https://github.com/$1/$2.git"; fi; }
  UPSTREAM_URL=$(url_for "$OWNER" "$REPO")
  if [[ $(printf %s "$LOGIN" | tr "[:upper:]" "[:lower:]") == "$(printf %s "$OWNER" | tr "[:upper:]" "[:lower:]")" ]]; then
    log "$OWNER/$REPO belongs to the logged-in user; pushing to it directly"
    FORK_URL=$UPSTREAM_URL
  else
    log "forking $OWNER/$REPO to $LOGIN (an existing fork is reused)"
    gh repo fork "$OWNER/$REPO" --clone=false >&2 || die "gh could not fork $OWNER/$REPO; check that it exists and that you may fork it"
    FORK_URL=$(url_for "$LOGIN" "$REPO")
  fi
fi

set_remote() { # name url
  if git remote get-url "$1" >/dev/null 2>&1; then
    [[ $(git remote get-url "$1") == "$2" ]] || g remote set-url "$1" "$2"
  else
    g remote add "$1" "$2"
  fi
}

# ---- clone or reuse ---------------------------------------------------------------------------
if [[ -e $CLONE_DIR ]]; then
  [[ -d $CLONE_DIR ]] || die "$CLONE_DIR exists and is not a directory; move it away"
  if ! git -C "$CLONE_DIR" rev-parse --git-dir >/dev/null 2>&1; then
    [[ -z $(ls -A "$CLONE_DIR") ]] || die "$CLONE_DIR exists, is not empty and is not a git clone; move it away or point the run at another workspace"
    rmdir "$CLONE_DIR"
  elif [[ $(cd "$CLONE_DIR" && git rev-parse --show-toplevel) != "$(cd "$CLONE_DIR" && pwd -P)" ]]; then
    die "$CLONE_DIR is inside another git repository, not a clone of its own; use a workspace outside it"
  fi
fi
if [[ -d $CLONE_DIR ]]; then
  log "reusing the clone in $CLONE_DIR"
  cd "$CLONE_DIR"
  if [[ -n $FORK_URL ]]; then set_remote origin "$FORK_URL"; fi
  if [[ -n $UPSTREAM_URL ]]; then set_remote upstream "$UPSTREAM_URL"; fi
  git remote get-url upstream >/dev/null 2>&1 || set_remote upstream "$(git remote get-url origin)"
  if [[ -n $(git status --porcelain --untracked-files=no -- . ':(exclude).agentpr_runtime') ]]; then
    die "the clone in $CLONE_DIR has uncommitted changes to tracked files; commit or discard them (git stash / git checkout -- .) before preparing"
  fi
  if [[ -d $(git rev-parse --git-path rebase-merge) || -d $(git rev-parse --git-path rebase-apply) ]]; then
    die "a rebase is in progress in $CLONE_DIR; finish it or run 'git rebase --abort'"
  fi
else
  mkdir -p "$(dirname "$CLONE_DIR")"
  log "cloning $FORK_URL into $CLONE_DIR"
  g clone --origin origin "$FORK_URL" "$CLONE_DIR" || die "git clone $FORK_URL failed; check the URL and your access"
  cd "$CLONE_DIR"
  set_remote upstream "$UPSTREAM_URL"
fi

# The worker's caches and reports live in .agentpr_runtime/; keep them out of every commit.
EXCLUDE_FILE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE_FILE")"
grep -qxF '.agentpr_runtime/' "$EXCLUDE_FILE" 2>/dev/null || echo '.agentpr_runtime/' >>"$EXCLUDE_FILE"

# ---- base branch ------------------------------------------------------------------------------
if [[ -z $BASE ]]; then
  BASE=$(git ls-remote --symref upstream HEAD 2>/dev/null | sed -n 's#^ref: refs/heads/\(.*\)[[:space:]]HEAD$#\1#p' | head -n1)
  if [[ -z $BASE ]]; then
    BASE=$(LC_ALL=C git remote show upstream 2>/dev/null | sed -n 's/^ *HEAD branch: //p' | head -n1)
    if [[ $BASE == "(unknown)" ]]; then BASE=; fi
  fi
  [[ -n $BASE ]] || die "cannot detect the default branch of upstream $(git remote get-url upstream); pass BASE explicitly"
  log "upstream default branch: $BASE"
fi

g fetch --prune upstream "+refs/heads/$BASE:refs/remotes/upstream/$BASE" \
  || die "cannot fetch branch '$BASE' from upstream $(git remote get-url upstream); check the branch name and your access"
g fetch --prune origin || die "cannot fetch from origin $(git remote get-url origin); check the URL and your access"

# Sync the local base branch to upstream (it mirrors upstream; local commits on it are not kept).
CURRENT=$(git symbolic-ref --quiet --short HEAD || true)
if [[ $CURRENT == "$BASE" ]]; then
  g reset --hard "upstream/$BASE"
else
  g branch -f "$BASE" "upstream/$BASE"
fi
git config agentpr.base "$BASE"

# ---- feature branch ---------------------------------------------------------------------------
if git show-ref --verify --quiet "refs/heads/$FEATURE"; then
  log "rebasing existing branch $FEATURE onto upstream/$BASE"
  g checkout "$FEATURE"
elif git show-ref --verify --quiet "refs/remotes/origin/$FEATURE"; then
  log "continuing branch $FEATURE from the fork, rebased onto upstream/$BASE"
  g checkout --track -b "$FEATURE" "origin/$FEATURE"
else
  log "creating branch $FEATURE from upstream/$BASE"
  g checkout --no-track -b "$FEATURE" "upstream/$BASE"
fi
# Rebasing writes commits: use a fallback identity when none is configured (as finish.sh does).
IDENTITY=()
if [[ -z $(git config --get user.name || true) ]]; then IDENTITY+=(-c "user.name=${AGENTPR_GIT_AUTHOR_NAME:-agentpr}"); fi
if [[ -z $(git config --get user.email || true) ]]; then IDENTITY+=(-c "user.email=${AGENTPR_GIT_AUTHOR_EMAIL:-agentpr@localhost}"); fi
if ! g ${IDENTITY[@]+"${IDENTITY[@]}"} rebase "upstream/$BASE"; then
  git rebase --abort >/dev/null 2>&1 || true
  die "rebasing $FEATURE onto upstream/$BASE hit conflicts (rebase aborted, branch unchanged); resolve by hand or use a new FEATURE name"
fi

echo "AGENTPR_REPO_DIR=$PWD"
echo "AGENTPR_BASE=$BASE"
echo "AGENTPR_BASE_SHA=$(git rev-parse "upstream/$BASE")"
echo "AGENTPR_BRANCH=$FEATURE"
