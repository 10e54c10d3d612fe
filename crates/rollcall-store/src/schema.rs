//! The schema, as a list of migrations. Never edit a shipped migration: append a new one.

/// Schema migrations, in order; `PRAGMA user_version` is the number applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: nodes and their transitions.
    "CREATE TABLE nodes (
        id TEXT PRIMARY KEY NOT NULL,
        generation INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        interval_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        labels BLOB NOT NULL,
        updated_at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        generation INTEGER NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        noticed_at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX transitions_by_node ON transitions (node, id);",
    // 2: incidents, the alert outbox, checks and their pings.
    "CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        subject_kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        members TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        resolved_at_ms INTEGER,
        next_sequence INTEGER NOT NULL,
        last_notified_at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX incidents_open ON incidents (id) WHERE resolved_at_ms IS NULL;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sink TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        incident INTEGER NOT NULL,
        subject TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        last_attempt_at_ms INTEGER,
        delivered_at_ms INTEGER,
        UNIQUE (sink, idempotency_key)
    ) STRICT;
    CREATE INDEX outbox_pending ON outbox (sink, id) WHERE delivered_at_ms IS NULL;
    CREATE TABLE checks (
        id TEXT PRIMARY KEY NOT NULL,
        token TEXT NOT NULL UNIQUE,
        spec TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL,
        last_ping_at_ms INTEGER,
        updated_at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE pings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        check_id TEXT NOT NULL,
        signal TEXT NOT NULL,
        rid TEXT,
        duration_ms INTEGER,
        body BLOB NOT NULL,
        body_truncated INTEGER NOT NULL,
        at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX pings_by_check ON pings (check_id, id);",
    // 3: transitions of checks live beside those of nodes, told apart by kind.
    "ALTER TABLE transitions ADD COLUMN subject_kind TEXT NOT NULL DEFAULT 'node';",
    // 4: the whole length of a ping's body, kept when the body itself is cut.
    "ALTER TABLE pings ADD COLUMN body_len INTEGER NOT NULL DEFAULT 0;",
    // 5: incident changes (for the event stream), silences, and what a silence holds.
    // An incident change takes its id from the same sequence as transitions (the
    // `transitions` row of `sqlite_sequence`, bumped in the writing transaction; see
    // `alerting::next_event_id`), so transitions and incident changes form one ordered,
    // durable sequence that `Last-Event-ID` resumes from.
    "CREATE TABLE incident_changes (
        id INTEGER PRIMARY KEY,
        incident INTEGER NOT NULL,
        change TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        detail TEXT NOT NULL
    ) STRICT;
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        matchers TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        ends_at_ms INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    ALTER TABLE incidents ADD COLUMN silenced_by INTEGER;
    ALTER TABLE incidents ADD COLUMN notified INTEGER NOT NULL DEFAULT 1;",
    // 6: leases with fencing tokens, and the highest token ever granted (one row, never
    // lowered: a token is never handed out twice, even after its lease row is deleted).
    "CREATE TABLE leases (
        name TEXT PRIMARY KEY NOT NULL,
        node TEXT NOT NULL,
        holder TEXT NOT NULL,
        token INTEGER NOT NULL,
        ttl_ms INTEGER NOT NULL,
        since_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE lease_tokens (last INTEGER NOT NULL) STRICT;
    INSERT INTO lease_tokens (last) VALUES (0);",
    // 7: how a watched process ended, on its `down (process-exited)` transition (NULL when
    // the agent could not tell, and on every other transition).
    "ALTER TABLE transitions ADD COLUMN exit_code INTEGER;
    ALTER TABLE transitions ADD COLUMN exit_signal INTEGER;",
    // 8: an incident change holds the incident as it was in columns, like `incidents`, not
    // as the JSON the API shows (`detail`); existing rows are converted. Times go from RFC
    // 3339 back to milliseconds (exact: they were written from milliseconds); `notified` was
    // not in the JSON and is taken from the incident's row. A row whose `detail` is not JSON
    // (never written so; only a hand edit makes one) had no incident to show and is dropped.
    "CREATE TABLE incident_changes_typed (
        id INTEGER PRIMARY KEY,
        incident INTEGER NOT NULL,
        change TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        subject_kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        members TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        resolved_at_ms INTEGER,
        next_sequence INTEGER NOT NULL,
        last_notified_at_ms INTEGER NOT NULL,
        silenced_by INTEGER,
        notified INTEGER NOT NULL,
        sent INTEGER NOT NULL,
        summary TEXT NOT NULL
    ) STRICT;
    INSERT INTO incident_changes_typed
    SELECT c.id, c.incident, c.change, c.at_ms,
        json_extract(c.detail, '$.incident.kind'),
        json_extract(c.detail, '$.incident.severity'),
        json_extract(c.detail, '$.incident.subject_kind'),
        json_extract(c.detail, '$.incident.subject'),
        coalesce((SELECT group_concat(m.value, char(10)) FROM json_each(c.detail, '$.incident.members') m), ''),
        CAST(round((julianday(json_extract(c.detail, '$.incident.started_at')) - 2440587.5) * 86400000) AS INTEGER),
        CAST(round((julianday(json_extract(c.detail, '$.incident.resolved_at')) - 2440587.5) * 86400000) AS INTEGER),
        json_extract(c.detail, '$.incident.notifications'),
        CAST(round((julianday(json_extract(c.detail, '$.incident.last_notified_at')) - 2440587.5) * 86400000) AS INTEGER),
        json_extract(c.detail, '$.incident.silenced_by'),
        coalesce((SELECT i.notified FROM incidents i WHERE i.id = c.incident), 1),
        coalesce(json_extract(c.detail, '$.sent'), 1),
        coalesce(json_extract(c.detail, '$.summary'), '')
    FROM incident_changes c WHERE json_valid(c.detail);
    DROP TABLE incident_changes;
    ALTER TABLE incident_changes_typed RENAME TO incident_changes;",
];
