"""Append-only, named schema steps for the ledger. Never edit a step; add one."""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_runs_attempts", """
        CREATE TABLE runs (
            run_id      TEXT PRIMARY KEY,
            session     TEXT NOT NULL,
            batch_id    TEXT,
            started_at  REAL NOT NULL,
            finished_at REAL,
            root        TEXT NOT NULL,
            git_head    TEXT,
            jobs        INTEGER NOT NULL DEFAULT 0,
            exit_code   INTEGER
        );
        CREATE TABLE attempts (
            id                    INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id                TEXT NOT NULL,
            session               TEXT NOT NULL,
            ts                    REAL NOT NULL,
            job_id                TEXT NOT NULL,
            task                  TEXT NOT NULL,
            task_fingerprint      TEXT NOT NULL,
            input_hash            TEXT NOT NULL,
            models_key            TEXT NOT NULL,
            routed_to             TEXT NOT NULL,
            lane                  TEXT NOT NULL,
            backend               TEXT NOT NULL,
            model                 TEXT NOT NULL,
            host                  TEXT,
            attempt               INTEGER NOT NULL,
            outcome               TEXT NOT NULL,
            reason                TEXT,
            fallback              TEXT,
            final                 INTEGER NOT NULL DEFAULT 0,
            input_tokens          INTEGER NOT NULL DEFAULT 0,
            output_tokens         INTEGER NOT NULL DEFAULT 0,
            cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
            latency_s             REAL NOT NULL DEFAULT 0,
            cost_usd              REAL NOT NULL DEFAULT 0,
            baseline_cost_usd     REAL NOT NULL DEFAULT 0,
            git_head              TEXT,
            output_path           TEXT,
            output_hash           TEXT,
            prompt_text           TEXT,
            answer_text           TEXT
        );
        CREATE INDEX attempts_session ON attempts (session, ts);
        CREATE INDEX attempts_ts ON attempts (ts);
        CREATE INDEX attempts_cache ON attempts (task_fingerprint, input_hash, models_key, outcome);
        CREATE INDEX attempts_task ON attempts (task, lane, outcome);
    """),
    ("0002_breaker_events", """
        CREATE TABLE breaker_events (
            id      INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id  TEXT NOT NULL,
            ts      REAL NOT NULL,
            state   TEXT NOT NULL,
            reason  TEXT NOT NULL
        );
        CREATE INDEX breaker_events_ts ON breaker_events (ts);
    """),
    # router-status over a million attempts in well under a second (bench/status_bench.py):
    # covering indexes for its aggregates, partial ones for the percentiles and the escalations.
    ("0003_status_indexes", """
        CREATE INDEX attempts_status ON attempts (task, routed_to, lane, outcome, final, ts, cost_usd,
            baseline_cost_usd, input_tokens, output_tokens);
        CREATE INDEX attempts_daily ON attempts (ts, final, routed_to, lane, outcome, cost_usd, baseline_cost_usd);
        CREATE INDEX attempts_latency ON attempts (lane, latency_s, ts, outcome)
            WHERE outcome IN ('ok', 'invalid', 'error');
        CREATE INDEX attempts_escalated ON attempts (run_id, job_id, outcome, ts, session)
            WHERE final = 1 AND routed_to = 'local' AND lane = 'cloud';
        CREATE INDEX attempts_left_local ON attempts (run_id, job_id, lane, attempt, outcome, reason)
            WHERE lane = 'local' AND outcome != 'ok';
        CREATE INDEX attempts_answers ON attempts (task, input_hash, ts, run_id)
            WHERE final = 1 AND outcome != 'cache_hit';
    """),
    ("0004_attempts_by_run", """
        CREATE INDEX attempts_run ON attempts (run_id, id);
    """),
    # a run that stopped on an unexpected error says so (exit_code alone cannot); the newest
    # answer written to a path, to tell a hand-edited output from the one the ledger recorded
    ("0005_run_error_and_outputs", """
        ALTER TABLE runs ADD COLUMN error TEXT;
        CREATE INDEX attempts_output ON attempts (output_path, id) WHERE output_path IS NOT NULL;
    """),
    # what a backend reported itself (Claude Code's total_cost_usd: an estimate a subscription does
    # not bill) and whether the tokens are an estimate (a job handed back to the calling Claude)
    ("0006_attempts_reported", """
        ALTER TABLE attempts ADD COLUMN reported_cost_usd REAL;
        ALTER TABLE attempts ADD COLUMN tokens_estimated INTEGER NOT NULL DEFAULT 0
    """),
    # the router's second opinion: one embedding per distinct instruction and model
    # (ollama_dist/routing/second_opinion.py)
    ("0007_instruction_embeddings", """
        CREATE TABLE instruction_embeddings (
            fingerprint TEXT NOT NULL,
            model_id    TEXT NOT NULL,
            vector      BLOB NOT NULL,
            created_at  REAL NOT NULL,
            PRIMARY KEY (fingerprint, model_id)
        );
        CREATE TABLE task_instructions (
            task_fingerprint TEXT PRIMARY KEY,
            task             TEXT NOT NULL,
            instruction      TEXT NOT NULL,
            created_at       REAL NOT NULL
        );
    """),
    # the plan's usage as Claude Code's status line reports it (`ollama-dist statusline`): the
    # five-hour and weekly windows' used_percentage and reset times, for budget-aware routing
    # (ollama_dist/routing/budget.py) and router-status
    ("0008_plan_usage", """
        CREATE TABLE plan_usage (
            id                  INTEGER PRIMARY KEY AUTOINCREMENT,
            ts                  REAL NOT NULL,
            session             TEXT,
            five_hour_pct       REAL,
            five_hour_resets_at REAL,
            seven_day_pct       REAL,
            seven_day_resets_at REAL
        );
        CREATE INDEX plan_usage_ts ON plan_usage (ts);
        CREATE INDEX plan_usage_session ON plan_usage (session, ts);
    """),
    # honest accounting (issue 12 points 7-8, issue 15): `wait_s`, the time an attempt queued for
    # a lane's slot, apart from `latency_s`, from now on the service time alone (NULL: an older row,
    # whose latency may include the wait); `unanswered_baseline_usd`, on the final row of a job that
    # ended unanswered with no cloud tokens to price, the estimate of what Claude would have charged
    # for it: in the whole run's baseline, never in the savings. The status indexes are rebuilt to
    # cover the new column; the wait has a partial index of its own for its percentiles.
    ("0009_wait_and_unanswered_baseline", """
        ALTER TABLE attempts ADD COLUMN wait_s REAL;
        ALTER TABLE attempts ADD COLUMN unanswered_baseline_usd REAL NOT NULL DEFAULT 0;
        DROP INDEX attempts_status;
        CREATE INDEX attempts_status ON attempts (task, routed_to, lane, outcome, final, ts, cost_usd,
            baseline_cost_usd, unanswered_baseline_usd, input_tokens, output_tokens);
        DROP INDEX attempts_daily;
        CREATE INDEX attempts_daily ON attempts (ts, final, routed_to, lane, outcome, cost_usd, baseline_cost_usd,
            unanswered_baseline_usd);
        CREATE INDEX attempts_wait ON attempts (lane, wait_s, ts) WHERE wait_s IS NOT NULL;
    """),
    # of an attempt's output tokens, how many were the model's reasoning trace (a thinking model's
    # message.thinking; Ollama counts it in eval_count without saying how much it was)
    ("0011_attempts_thinking_tokens", """
        ALTER TABLE attempts ADD COLUMN thinking_tokens INTEGER NOT NULL DEFAULT 0
    """),
    # `run --refresh`: the answers a run discarded, so they are never served again; the attempts
    # themselves stay (the ledger keeps its history). A cached answer is served only when it is
    # newer than its key's last discard.
    ("0014_discarded_answers", """
        CREATE TABLE discarded_answers (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id           TEXT NOT NULL,
            ts               REAL NOT NULL,
            task_fingerprint TEXT NOT NULL,
            input_hash       TEXT NOT NULL,
            models_key       TEXT NOT NULL,
            before_id        INTEGER NOT NULL
        );
        CREATE INDEX discarded_answers_key ON discarded_answers (task_fingerprint, input_hash, models_key, before_id);
    """),
]
