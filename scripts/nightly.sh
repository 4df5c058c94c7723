#!/usr/bin/env bash
# The unattended nightly run: start Ollama and warm the model, run the batch, report
# the last day, stop Ollama again. When Ollama cannot be started the run still goes
# ahead (the embedded tier or Claude answers) and says so. Exits with the run's exit code (0 every job valid,
# 1 some job failed, 2 bad input, 75 the batch is still running from last time,
# 130 interrupted), so cron and CI can act on it.
#
#   nightly.sh [TASKS...]          default: tasks/nightly (relative to the working directory)
#
# Environment (all optional):
#   OLLAMA_DIST        the ollama-dist executable (cron's PATH is short; give the full path)
#   NIGHTLY_MODEL      the model to warm            (default: gemma3:270m)
#   NIGHTLY_BATCH      the batch id (lock and log)  (default: nightly)
#
# crontab (02:30 every night; cron has no ANTHROPIC_API_KEY unless the crontab or the
# ollama-dist config gives it; each run's own log is in ~/.ollama-dist/logs/):
#   30 2 * * * mkdir -p $HOME/.ollama-dist/logs && cd /path/to/project && OLLAMA_DIST=$HOME/.local/bin/ollama-dist /path/to/ollama-dist/scripts/nightly.sh >>$HOME/.ollama-dist/logs/cron.log 2>&1
set -euo pipefail

OD=${OLLAMA_DIST:-ollama-dist}
MODEL=${NIGHTLY_MODEL:-gemma3:270m}
BATCH=${NIGHTLY_BATCH:-nightly}
if [ "$#" -eq 0 ]; then
  set -- tasks/nightly
fi

say() { printf 'nightly: %s\n' "$*" >&2; }

# `ollama off` stops only what `ollama on` started. It is skipped when the run found
# the batch still running (exit 75): that earlier run is using the server.
status=0
turn_off=1
finish() {
  local code=$?
  trap - EXIT INT TERM
  if [ "$turn_off" -eq 1 ]; then
    "$OD" ollama off >&2 || say "ollama off failed (exit $?)"
  fi
  if [ "$status" -eq 0 ]; then
    status=$code
  fi
  say "done, exit $status"
  exit "$status"
}
trap finish EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

say "starting $(date '+%Y-%m-%d %H:%M:%S'), batch $BATCH"
# Without Ollama (not installed, will not start, the model not pulled) the night goes on: the run
# sends local jobs to the embedded llama.cpp tier when it is installed, else to Claude, and its
# report says which answered.
on_status=0
"$OD" ollama on --warm "$MODEL" >&2 || on_status=$?
if [ "$on_status" -ne 0 ]; then
  say "ollama on failed (exit $on_status); going on without Ollama: local jobs go to the embedded" \
      "llama.cpp tier if it is installed (scripts/setup.sh), else to Claude"
fi

# Everything but router-status's JSON goes to stderr, so stdout is that JSON alone.
"$OD" run --batch-id "$BATCH" "$@" >&2 || status=$?
if [ "$status" -eq 75 ]; then
  turn_off=0
  say "batch $BATCH is still running; leaving Ollama on"
  exit "$status"
fi

"$OD" router-status --since 1d --json || say "router-status failed (exit $?)"
exit "$status"
