"""The database schema as an ordered list of migrations.

``PRAGMA user_version`` holds the number of migrations applied. A new version appends a migration;
existing ones are never edited, so any older file upgrades in place when it is opened.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the four tables of the Network Characteristic Database (paper, section 3.3).
    """
    CREATE TABLE networks (
        id INTEGER PRIMARY KEY,
        structure_hash TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '{}',
        features TEXT,
        added_at TEXT NOT NULL
    );
    -- Several model files (same graph, other weights or names) map to one network.
    CREATE TABLE network_files (
        file_sha256 TEXT PRIMARY KEY,
        network_id INTEGER NOT NULL REFERENCES networks(id),
        path TEXT
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        fingerprint TEXT NOT NULL DEFAULT '{}',
        spec TEXT NOT NULL,
        features TEXT NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        record_key TEXT NOT NULL UNIQUE,
        network_id INTEGER NOT NULL REFERENCES networks(id),
        device_id TEXT NOT NULL REFERENCES devices(id),
        config TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        median_s REAL,
        mean_s REAL,
        std_s REAL,
        p10_s REAL,
        p90_s REAL,
        min_s REAL,
        count INTEGER,
        session_create_s REAL,
        stats TEXT NOT NULL DEFAULT '{}',
        flags TEXT NOT NULL DEFAULT '[]',
        failure TEXT,
        source TEXT NOT NULL,
        measured_at TEXT NOT NULL,
        imported_at TEXT NOT NULL
    );
    CREATE INDEX measurements_by_pair ON measurements(network_id, device_id);
    CREATE TABLE predictions (
        id INTEGER PRIMARY KEY,
        network_id INTEGER NOT NULL REFERENCES networks(id),
        device_id TEXT NOT NULL REFERENCES devices(id),
        predictor TEXT NOT NULL,
        predicted_s REAL NOT NULL,
        interval_low_s REAL,
        interval_high_s REAL,
        measurement_id INTEGER REFERENCES measurements(id),
        predicted_at TEXT NOT NULL
    );
    CREATE INDEX predictions_by_pair ON predictions(network_id, device_id);
    """,
    # 2: flag measurements of CPU configurations with intra-op threads that were timed in several
    # sessions (importer.protocol_flags says why; it flags newly imported ones the same way).
    """
    UPDATE measurements SET flags = json_insert(flags, '$[#]', 'contended_sessions')
    WHERE COALESCE(json_extract(stats, '$.sessions'), 1) > 1
      AND COALESCE(json_extract(config, '$.threads'), 0) != 1
      AND COALESCE(json_extract(config, '$.provider'), '') NOT IN
          ('CUDAExecutionProvider', 'TensorrtExecutionProvider', 'ROCMExecutionProvider', 'MIGraphXExecutionProvider')
      AND NOT EXISTS (SELECT 1 FROM json_each(measurements.flags) WHERE value = 'contended_sessions')
    """,
    # 3: which analyzer feature schema (sniper_onnx/feature_schema.py) computed each network's
    # features, so a predictor trained on them records the schema they really have. Networks stored
    # before keep NULL: unknown, never guessed.
    """
    ALTER TABLE networks ADD COLUMN feature_schema TEXT
    """,
    # 4: the element type most of a network's weights are stored in (int8, float16, float32, ...),
    # so a measurement labelled with another precision (an int8 model timed under fp32: the profiler
    # sees only its fp32 inputs) is flagged precision_mismatch at import. NULL: not known yet.
    """
    ALTER TABLE networks ADD COLUMN weight_type TEXT
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
