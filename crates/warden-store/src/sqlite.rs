//! The embedded SQLite implementation of [`Store`]: one file, WAL journal, foreign keys
//! on, `synchronous=FULL`, schema migrations tracked in `PRAGMA user_version`.

use crate::{
    Admin, Alert, ApiKey, Approval, Attributes, Block, Deployment, DeploymentStatus, Error,
    Evaluation, Identity, IdentityKind, Lockdown, NewBlock, Release, ReleaseState, Result,
    Retirement, Store, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Schema migrations, in order; `user_version` counts how many have been applied.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
CREATE TABLE identities (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('user', 'admin', 'service')),
    attributes  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    identity    TEXT NOT NULL REFERENCES identities(id),
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_identity ON api_keys(identity);
CREATE TABLE blocks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    identity    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    blocked_by  TEXT NOT NULL,
    blocked_at  INTEGER NOT NULL,
    lifted_at   INTEGER,
    lifted_by   TEXT
);
CREATE INDEX blocks_identity ON blocks(identity);
CREATE TABLE lockdown (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    active      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    set_by      TEXT NOT NULL,
    set_at      INTEGER NOT NULL
);
CREATE TABLE admins (
    name        TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    key_ref     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE releases (
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    state           TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    manifest        TEXT NOT NULL,
    kek_id          TEXT NOT NULL,
    data_key_id     TEXT NOT NULL,
    wrapped_key     BLOB NOT NULL,
    importer        TEXT NOT NULL,
    total_bytes     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    shredded_by     TEXT,
    shredded_at     INTEGER,
    PRIMARY KEY (name, version)
);
CREATE TABLE evaluations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    command     TEXT NOT NULL,
    metrics     TEXT NOT NULL,
    passed      INTEGER NOT NULL,
    detail      TEXT NOT NULL,
    by_whom     TEXT NOT NULL,
    at          INTEGER NOT NULL,
    FOREIGN KEY (name, version) REFERENCES releases(name, version)
);
CREATE TABLE approvals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    admin           TEXT NOT NULL REFERENCES admins(name),
    action          TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    signature       BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER,
    FOREIGN KEY (name, version) REFERENCES releases(name, version)
);
CREATE UNIQUE INDEX approvals_one_open_per_admin
    ON approvals(name, version, action, admin) WHERE used_at IS NULL;
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    dir         TEXT NOT NULL,
    status      TEXT NOT NULL,
    by_whom     TEXT NOT NULL,
    at          INTEGER NOT NULL,
    FOREIGN KEY (name, version) REFERENCES releases(name, version)
);
CREATE INDEX deployments_dir ON deployments(dir);
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    severity    TEXT NOT NULL,
    source      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    message     TEXT NOT NULL
);
"#,
    // 2: the digest of the configuration a deployment was made under (integrity monitor).
    "ALTER TABLE deployments ADD COLUMN config_digest TEXT NOT NULL DEFAULT '';",
    // 3: the signed retirement of a release (state `retired`).
    r#"
ALTER TABLE releases ADD COLUMN retired_by TEXT;
ALTER TABLE releases ADD COLUMN retired_at INTEGER;
ALTER TABLE releases ADD COLUMN retire_reason TEXT;
ALTER TABLE releases ADD COLUMN retire_signature BLOB;
"#,
];

/// SQLite-backed [`Store`]. One connection behind a mutex: SQLite serialises writers
/// anyway, and Warden's state changes are small.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn q(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::Query {
        op,
        detail: e.to_string().to_lowercase(),
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ConstraintViolation)
    )
}

fn opt_u64(v: i64, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Corrupt {
        what,
        detail: format!("negative value {v}"),
    })
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    /// A new file is created readable by its owner only.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let existed = path.exists();
        let conn = Connection::open(path).map_err(|e| Error::Open {
            path: shown.clone(),
            detail: e.to_string().to_lowercase(),
        })?;
        if !existed {
            restrict_permissions(path).map_err(|e| Error::Open {
                path: shown.clone(),
                detail: e.to_string().to_lowercase(),
            })?;
        }
        Self::init(conn, &shown)
    }

    /// A private in-memory database (tests, dry runs).
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|e| Error::Open {
            path: ":memory:".into(),
            detail: e.to_string().to_lowercase(),
        })?;
        Self::init(conn, ":memory:")
    }

    fn init(mut conn: Connection, shown: &str) -> Result<Self> {
        let open_err = |e: rusqlite::Error| Error::Open {
            path: shown.to_owned(),
            detail: e.to_string().to_lowercase(),
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        // WAL: readers (the gateway, the monitor) do not block the CLI's writes.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;")
            .map_err(open_err)?;
        migrate(&mut conn, shown)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| Error::Query {
            op: "lock",
            detail: "an earlier operation panicked while holding the connection".into(),
        })
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The schema version this build writes.
pub(crate) fn supported_version() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

fn migrate(conn: &mut Connection, shown: &str) -> Result<()> {
    let tx = conn.transaction().map_err(q("begin migration"))?;
    let current: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(q("read schema version"))?;
    let supported = supported_version();
    if current > supported {
        return Err(Error::SchemaTooNew {
            path: shown.to_owned(),
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql).map_err(q("apply migration"))?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(q("record schema version"))?;
    }
    tx.commit().map_err(q("commit migration"))
}

fn identity_from(r: &Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn identity_decode(row: (String, String, String, i64)) -> Result<Identity> {
    let (id, kind, attrs, created_at) = row;
    let kind = IdentityKind::parse(&kind).ok_or_else(|| Error::Corrupt {
        what: "identities.kind",
        detail: format!("unknown kind {kind:?}"),
    })?;
    let attributes: Attributes = serde_json::from_str(&attrs).map_err(|e| Error::Corrupt {
        what: "identities.attributes",
        detail: e.to_string(),
    })?;
    Ok(Identity {
        id,
        kind,
        attributes,
        created_at,
    })
}

fn api_key_from(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        key_id: r.get(0)?,
        identity: r.get(1)?,
        secret_hash: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn block_from(r: &Row<'_>) -> rusqlite::Result<Block> {
    Ok(Block {
        id: r.get(0)?,
        identity: r.get(1)?,
        reason: r.get(2)?,
        blocked_by: r.get(3)?,
        blocked_at: r.get(4)?,
        lifted_at: r.get(5)?,
        lifted_by: r.get(6)?,
    })
}

fn admin_from(r: &Row<'_>) -> rusqlite::Result<Admin> {
    Ok(Admin {
        name: r.get(0)?,
        algorithm: r.get(1)?,
        public_key: r.get(2)?,
        key_ref: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const RELEASE_COLS: &str = "name, version, state, manifest_digest, manifest, kek_id, data_key_id, \
     wrapped_key, importer, total_bytes, created_at, shredded_by, shredded_at, retired_by, \
     retired_at, retire_reason, retire_signature";

struct ReleaseRow {
    r: Release,
    state: String,
    total: i64,
    retired: (Option<String>, Option<i64>, Option<String>, Option<Vec<u8>>),
}

fn release_from(r: &Row<'_>) -> rusqlite::Result<ReleaseRow> {
    Ok(ReleaseRow {
        state: r.get(2)?,
        total: r.get(9)?,
        retired: (r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?),
        r: Release {
            name: r.get(0)?,
            version: r.get(1)?,
            state: ReleaseState::Imported,
            manifest_digest: r.get(3)?,
            manifest: r.get(4)?,
            kek_id: r.get(5)?,
            data_key_id: r.get(6)?,
            wrapped_key: r.get(7)?,
            importer: r.get(8)?,
            total_bytes: 0,
            created_at: r.get(10)?,
            shredded_by: r.get(11)?,
            shredded_at: r.get(12)?,
            retired: None,
        },
    })
}

fn release_decode(row: ReleaseRow) -> Result<Release> {
    let mut r = row.r;
    r.state = ReleaseState::parse(&row.state).ok_or_else(|| Error::Corrupt {
        what: "releases.state",
        detail: format!("unknown state {:?}", row.state),
    })?;
    r.total_bytes = opt_u64(row.total, "releases.total_bytes")?;
    r.retired = match row.retired {
        (None, None, None, None) => None,
        (Some(by), Some(at), Some(reason), Some(signature)) => Some(Retirement {
            by,
            at,
            reason,
            signature,
        }),
        _ => {
            return Err(Error::Corrupt {
                what: "releases.retired_*",
                detail: "partial retirement record".into(),
            });
        }
    };
    Ok(r)
}

fn evaluation_from(r: &Row<'_>) -> rusqlite::Result<Evaluation> {
    Ok(Evaluation {
        id: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        command: r.get(3)?,
        metrics: r.get(4)?,
        passed: r.get(5)?,
        detail: r.get(6)?,
        by: r.get(7)?,
        at: r.get(8)?,
    })
}

fn approval_from(r: &Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        id: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        admin: r.get(3)?,
        action: r.get(4)?,
        manifest_digest: r.get(5)?,
        signature: r.get(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        used_at: r.get(9)?,
    })
}

fn deployment_from(r: &Row<'_>) -> rusqlite::Result<(Deployment, String)> {
    Ok((
        Deployment {
            id: r.get(0)?,
            name: r.get(1)?,
            version: r.get(2)?,
            dir: r.get(3)?,
            status: DeploymentStatus::Active,
            by: r.get(5)?,
            at: r.get(6)?,
            config_digest: r.get(7)?,
        },
        r.get(4)?,
    ))
}

fn deployment_decode((mut d, status): (Deployment, String)) -> Result<Deployment> {
    d.status = DeploymentStatus::parse(&status).ok_or_else(|| Error::Corrupt {
        what: "deployments.status",
        detail: format!("unknown status {status:?}"),
    })?;
    Ok(d)
}

fn alert_from(r: &Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(0)?,
        at: r.get(1)?,
        severity: r.get(2)?,
        source: r.get(3)?,
        subject: r.get(4)?,
        message: r.get(5)?,
    })
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<T>>, op: &'static str) -> Result<Vec<T>> {
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(q(op))
}

fn mark_used(tx: &rusqlite::Transaction<'_>, ids: &[i64], at: Timestamp) -> Result<()> {
    for id in ids {
        let n = tx
            .execute(
                "UPDATE approvals SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL",
                params![id, at],
            )
            .map_err(q("use approval"))?;
        if n != 1 {
            return Err(Error::Conflict(format!(
                "approval {id} was already used or does not exist"
            )));
        }
    }
    Ok(())
}

impl Store for SqliteStore {
    fn schema_version(&self) -> Result<u32> {
        self.conn()?
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(q("read schema version"))
    }

    fn put_identity(&self, identity: &Identity) -> Result<()> {
        let attrs = serde_json::to_string(&identity.attributes).map_err(|e| Error::Corrupt {
            what: "identities.attributes",
            detail: e.to_string(),
        })?;
        self.conn()?
            .execute(
                "INSERT INTO identities (id, kind, attributes, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, attributes = excluded.attributes",
                params![identity.id, identity.kind.as_str(), attrs, identity.created_at],
            )
            .map_err(q("store identity"))?;
        Ok(())
    }

    fn identity(&self, id: &str) -> Result<Option<Identity>> {
        let row = self
            .conn()?
            .query_row(
                "SELECT id, kind, attributes, created_at FROM identities WHERE id = ?1",
                [id],
                identity_from,
            )
            .optional()
            .map_err(q("read identity"))?;
        row.map(identity_decode).transpose()
    }

    fn identities(&self) -> Result<Vec<Identity>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare("SELECT id, kind, attributes, created_at FROM identities ORDER BY id")
            .map_err(q("list identities"))?;
        let rows = collect(
            st.query_map([], identity_from)
                .map_err(q("list identities"))?,
            "list identities",
        )?;
        rows.into_iter().map(identity_decode).collect()
    }

    fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO api_keys (key_id, identity, secret_hash, created_at, expires_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.key_id,
                    key.identity,
                    key.secret_hash,
                    key.created_at,
                    key.expires_at,
                    key.revoked_at
                ],
            )
            .map_err(|e| {
                if is_constraint(&e) {
                    Error::Conflict(format!(
                        "api key {}: duplicate key id or unknown identity {}",
                        key.key_id, key.identity
                    ))
                } else {
                    q("store api key")(e)
                }
            })?;
        Ok(())
    }

    fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>> {
        self.conn()?
            .query_row(
                "SELECT key_id, identity, secret_hash, created_at, expires_at, revoked_at
                 FROM api_keys WHERE key_id = ?1",
                [key_id],
                api_key_from,
            )
            .optional()
            .map_err(q("read api key"))
    }

    fn api_keys(&self, identity: Option<&str>) -> Result<Vec<ApiKey>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare(
                "SELECT key_id, identity, secret_hash, created_at, expires_at, revoked_at
                 FROM api_keys WHERE ?1 IS NULL OR identity = ?1 ORDER BY created_at, key_id",
            )
            .map_err(q("list api keys"))?;
        collect(
            st.query_map([identity], api_key_from)
                .map_err(q("list api keys"))?,
            "list api keys",
        )
    }

    fn revoke_api_key(&self, key_id: &str, at: Timestamp) -> Result<()> {
        let n = self
            .conn()?
            .execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE key_id = ?1",
                params![key_id, at],
            )
            .map_err(q("revoke api key"))?;
        if n == 0 {
            return Err(Error::NotFound(format!("api key {key_id}")));
        }
        Ok(())
    }

    fn insert_block(&self, block: &NewBlock) -> Result<i64> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO blocks (identity, reason, blocked_by, blocked_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                block.identity,
                block.reason,
                block.blocked_by,
                block.blocked_at
            ],
        )
        .map_err(q("store block"))?;
        Ok(conn.last_insert_rowid())
    }

    fn lift_blocks(&self, identity: &str, by: &str, at: Timestamp) -> Result<usize> {
        self.conn()?
            .execute(
                "UPDATE blocks SET lifted_at = ?3, lifted_by = ?2
                 WHERE identity = ?1 AND lifted_at IS NULL",
                params![identity, by, at],
            )
            .map_err(q("lift block"))
    }

    fn active_blocks(&self) -> Result<Vec<Block>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare(
                "SELECT id, identity, reason, blocked_by, blocked_at, lifted_at, lifted_by
                 FROM blocks WHERE lifted_at IS NULL ORDER BY id",
            )
            .map_err(q("list blocks"))?;
        collect(
            st.query_map([], block_from).map_err(q("list blocks"))?,
            "list blocks",
        )
    }

    fn set_lockdown(&self, lockdown: &Lockdown) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO lockdown (active, reason, set_by, set_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    lockdown.active,
                    lockdown.reason,
                    lockdown.set_by,
                    lockdown.set_at
                ],
            )
            .map_err(q("set lockdown"))?;
        Ok(())
    }

    fn lockdown(&self) -> Result<Option<Lockdown>> {
        self.conn()?
            .query_row(
                "SELECT active, reason, set_by, set_at FROM lockdown ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(Lockdown {
                        active: r.get(0)?,
                        reason: r.get(1)?,
                        set_by: r.get(2)?,
                        set_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(q("read lockdown"))
    }

    fn insert_admin(&self, admin: &Admin) -> Result<()> {
        self.conn()?
            .execute(
                "INSERT INTO admins (name, algorithm, public_key, key_ref, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    admin.name,
                    admin.algorithm,
                    admin.public_key,
                    admin.key_ref,
                    admin.created_at
                ],
            )
            .map_err(|e| {
                if is_constraint(&e) {
                    Error::Conflict(format!("admin {} already exists", admin.name))
                } else {
                    q("store admin")(e)
                }
            })?;
        Ok(())
    }

    fn admin(&self, name: &str) -> Result<Option<Admin>> {
        self.conn()?
            .query_row(
                "SELECT name, algorithm, public_key, key_ref, created_at FROM admins WHERE name = ?1",
                [name],
                admin_from,
            )
            .optional()
            .map_err(q("read admin"))
    }

    fn admins(&self) -> Result<Vec<Admin>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare(
                "SELECT name, algorithm, public_key, key_ref, created_at FROM admins ORDER BY name",
            )
            .map_err(q("list admins"))?;
        collect(
            st.query_map([], admin_from).map_err(q("list admins"))?,
            "list admins",
        )
    }

    fn insert_release(&self, r: &Release) -> Result<()> {
        let total = i64::try_from(r.total_bytes).map_err(|_| Error::Corrupt {
            what: "releases.total_bytes",
            detail: "size does not fit in 63 bits".into(),
        })?;
        self.conn()?
            .execute(
                &format!(
                    "INSERT INTO releases ({RELEASE_COLS}) VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
                ),
                params![
                    r.name,
                    r.version,
                    r.state.as_str(),
                    r.manifest_digest,
                    r.manifest,
                    r.kek_id,
                    r.data_key_id,
                    r.wrapped_key,
                    r.importer,
                    total,
                    r.created_at,
                    r.shredded_by,
                    r.shredded_at,
                    r.retired.as_ref().map(|x| &x.by),
                    r.retired.as_ref().map(|x| x.at),
                    r.retired.as_ref().map(|x| &x.reason),
                    r.retired.as_ref().map(|x| &x.signature)
                ],
            )
            .map_err(|e| {
                if is_constraint(&e) {
                    Error::Conflict(format!("release {}@{} already exists", r.name, r.version))
                } else {
                    q("store release")(e)
                }
            })?;
        Ok(())
    }

    fn release(&self, name: &str, version: &str) -> Result<Option<Release>> {
        let row = self
            .conn()?
            .query_row(
                &format!("SELECT {RELEASE_COLS} FROM releases WHERE name = ?1 AND version = ?2"),
                [name, version],
                release_from,
            )
            .optional()
            .map_err(q("read release"))?;
        row.map(release_decode).transpose()
    }

    fn releases(&self, name: Option<&str>) -> Result<Vec<Release>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare(&format!(
                "SELECT {RELEASE_COLS} FROM releases WHERE ?1 IS NULL OR name = ?1
                 ORDER BY created_at, name, version"
            ))
            .map_err(q("list releases"))?;
        let rows = collect(
            st.query_map([name], release_from)
                .map_err(q("list releases"))?,
            "list releases",
        )?;
        rows.into_iter().map(release_decode).collect()
    }

    fn set_release_state(
        &self,
        name: &str,
        version: &str,
        from: &[ReleaseState],
        to: ReleaseState,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(q("begin"))?;
        let cur: Option<String> = tx
            .query_row(
                "SELECT state FROM releases WHERE name = ?1 AND version = ?2",
                [name, version],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("read release state"))?;
        let Some(cur) = cur else {
            return Err(Error::NotFound(format!("release {name}@{version}")));
        };
        if !from.iter().any(|s| s.as_str() == cur) {
            return Err(Error::Conflict(format!(
                "release {name}@{version} is {cur}, expected {}",
                from.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        tx.execute(
            "UPDATE releases SET state = ?3 WHERE name = ?1 AND version = ?2",
            params![name, version, to.as_str()],
        )
        .map_err(q("set release state"))?;
        tx.commit().map_err(q("commit"))
    }

    fn mark_shredded(&self, name: &str, version: &str, by: &str, at: Timestamp) -> Result<()> {
        let n = self
            .conn()?
            .execute(
                "UPDATE releases SET state = 'shredded', wrapped_key = x'', shredded_by = ?3,
                 shredded_at = ?4 WHERE name = ?1 AND version = ?2 AND state <> 'shredded'",
                params![name, version, by, at],
            )
            .map_err(q("mark release shredded"))?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "release {name}@{version} does not exist or is already shredded"
            )));
        }
        Ok(())
    }

    fn retire_release(
        &self,
        name: &str,
        version: &str,
        ret: &Retirement,
        include_deployments: bool,
    ) -> Result<Vec<Deployment>> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(q("begin"))?;
        let cur: Option<String> = tx
            .query_row(
                "SELECT state FROM releases WHERE name = ?1 AND version = ?2",
                [name, version],
                |r| r.get(0),
            )
            .optional()
            .map_err(q("read release state"))?;
        let Some(cur) = cur else {
            return Err(Error::NotFound(format!("release {name}@{version}")));
        };
        if matches!(cur.as_str(), "retired" | "shredded") {
            return Err(Error::Conflict(format!(
                "release {name}@{version} is already {cur}"
            )));
        }
        let active = {
            let mut st = tx
                .prepare(
                    "SELECT id, name, version, dir, status, by_whom, at, config_digest
                     FROM deployments WHERE name = ?1 AND version = ?2 AND status = 'active'
                     ORDER BY id",
                )
                .map_err(q("list deployments"))?;
            let rows = collect(
                st.query_map([name, version], deployment_from)
                    .map_err(q("list deployments"))?,
                "list deployments",
            )?;
            rows.into_iter()
                .map(deployment_decode)
                .collect::<Result<Vec<_>>>()?
        };
        if !active.is_empty() && !include_deployments {
            let dirs: Vec<&str> = active.iter().map(|d| d.dir.as_str()).collect();
            return Err(Error::Conflict(format!(
                "release {name}@{version} is deployed in {}",
                dirs.join(", ")
            )));
        }
        for d in &active {
            tx.execute(
                "UPDATE deployments SET status = 'removed' WHERE id = ?1",
                [d.id],
            )
            .map_err(q("remove deployment"))?;
        }
        tx.execute(
            "UPDATE approvals SET used_at = ?3 WHERE name = ?1 AND version = ?2
             AND action = 'deploy' AND used_at IS NULL",
            params![name, version, ret.at],
        )
        .map_err(q("void approvals"))?;
        tx.execute(
            "UPDATE releases SET state = 'retired', retired_by = ?3, retired_at = ?4,
             retire_reason = ?5, retire_signature = ?6 WHERE name = ?1 AND version = ?2",
            params![name, version, ret.by, ret.at, ret.reason, ret.signature],
        )
        .map_err(q("retire release"))?;
        tx.commit().map_err(q("commit"))?;
        Ok(active
            .into_iter()
            .map(|mut d| {
                d.status = DeploymentStatus::Removed;
                d
            })
            .collect())
    }

    fn delete_release(&self, name: &str, version: &str) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(q("begin"))?;
        for table in ["evaluations", "approvals", "deployments"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE name = ?1 AND version = ?2"),
                [name, version],
            )
            .map_err(q("delete release"))?;
        }
        tx.execute(
            "DELETE FROM releases WHERE name = ?1 AND version = ?2",
            [name, version],
        )
        .map_err(q("delete release"))?;
        tx.commit().map_err(q("commit"))
    }

    fn record_evaluation(&self, e: &Evaluation) -> Result<i64> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(q("begin"))?;
        let to = if e.passed {
            ReleaseState::Evaluated
        } else {
            ReleaseState::Rejected
        };
        let n = tx
            .execute(
                "UPDATE releases SET state = ?3 WHERE name = ?1 AND version = ?2
                 AND state IN ('imported', 'evaluated', 'rejected')",
                params![e.name, e.version, to.as_str()],
            )
            .map_err(q("record evaluation"))?;
        if n != 1 {
            return Err(Error::Conflict(format!(
                "release {}@{} does not exist or is past evaluation",
                e.name, e.version
            )));
        }
        tx.execute(
            "INSERT INTO evaluations (name, version, command, metrics, passed, detail, by_whom, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                e.name, e.version, e.command, e.metrics, e.passed, e.detail, e.by, e.at
            ],
        )
        .map_err(q("record evaluation"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(q("commit"))?;
        Ok(id)
    }

    fn evaluations(&self, name: &str, version: &str) -> Result<Vec<Evaluation>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare(
                "SELECT id, name, version, command, metrics, passed, detail, by_whom, at
                 FROM evaluations WHERE name = ?1 AND version = ?2 ORDER BY id",
            )
            .map_err(q("list evaluations"))?;
        collect(
            st.query_map([name, version], evaluation_from)
                .map_err(q("list evaluations"))?,
            "list evaluations",
        )
    }

    fn insert_approval(&self, a: &Approval) -> Result<i64> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO approvals (name, version, admin, action, manifest_digest, signature,
             created_at, expires_at, used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                a.name,
                a.version,
                a.admin,
                a.action,
                a.manifest_digest,
                a.signature,
                a.created_at,
                a.expires_at,
                a.used_at
            ],
        )
        .map_err(|e| {
            if is_constraint(&e) {
                Error::Conflict(format!(
                    "admin {} already has an unused {} approval for {}@{} (or the admin or release does not exist)",
                    a.admin, a.action, a.name, a.version
                ))
            } else {
                q("store approval")(e)
            }
        })?;
        Ok(conn.last_insert_rowid())
    }

    fn approvals(&self, name: &str, version: &str) -> Result<Vec<Approval>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare(
                "SELECT id, name, version, admin, action, manifest_digest, signature, created_at,
                 expires_at, used_at FROM approvals WHERE name = ?1 AND version = ?2 ORDER BY id",
            )
            .map_err(q("list approvals"))?;
        collect(
            st.query_map([name, version], approval_from)
                .map_err(q("list approvals"))?,
            "list approvals",
        )
    }

    fn consume_approvals(&self, ids: &[i64], at: Timestamp) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(q("begin"))?;
        mark_used(&tx, ids, at)?;
        tx.commit().map_err(q("commit"))
    }

    fn record_deployment(&self, d: &Deployment, approvals: &[i64]) -> Result<i64> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(q("begin"))?;
        mark_used(&tx, approvals, d.at)?;
        tx.execute(
            "UPDATE deployments SET status = 'superseded' WHERE dir = ?1 AND status = 'active'",
            [&d.dir],
        )
        .map_err(q("supersede deployment"))?;
        let n = tx
            .execute(
                "UPDATE releases SET state = 'deployed' WHERE name = ?1 AND version = ?2
                 AND state IN ('evaluated', 'approved', 'deployed')",
                [&d.name, &d.version],
            )
            .map_err(q("record deployment"))?;
        if n != 1 {
            return Err(Error::Conflict(format!(
                "release {}@{} does not exist or is not deployable",
                d.name, d.version
            )));
        }
        tx.execute(
            "INSERT INTO deployments (name, version, dir, status, by_whom, at, config_digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                d.name,
                d.version,
                d.dir,
                d.status.as_str(),
                d.by,
                d.at,
                d.config_digest
            ],
        )
        .map_err(q("record deployment"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(q("commit"))?;
        Ok(id)
    }

    fn deployments(&self, dir: Option<&str>) -> Result<Vec<Deployment>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare(
                "SELECT id, name, version, dir, status, by_whom, at, config_digest FROM deployments
                 WHERE ?1 IS NULL OR dir = ?1 ORDER BY id",
            )
            .map_err(q("list deployments"))?;
        let rows = collect(
            st.query_map([dir], deployment_from)
                .map_err(q("list deployments"))?,
            "list deployments",
        )?;
        rows.into_iter().map(deployment_decode).collect()
    }

    fn set_deployment_config_digest(&self, id: i64, digest: &str) -> Result<()> {
        let n = self
            .conn()?
            .execute(
                "UPDATE deployments SET config_digest = ?2 WHERE id = ?1",
                params![id, digest],
            )
            .map_err(q("set deployment configuration digest"))?;
        if n == 0 {
            return Err(Error::NotFound(format!("deployment {id}")));
        }
        Ok(())
    }

    fn set_deployment_status(&self, id: i64, status: DeploymentStatus) -> Result<()> {
        let n = self
            .conn()?
            .execute(
                "UPDATE deployments SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )
            .map_err(q("set deployment status"))?;
        if n == 0 {
            return Err(Error::NotFound(format!("deployment {id}")));
        }
        Ok(())
    }

    fn insert_alert(&self, a: &Alert) -> Result<i64> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO alerts (at, severity, source, subject, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![a.at, a.severity, a.source, a.subject, a.message],
        )
        .map_err(q("store alert"))?;
        Ok(conn.last_insert_rowid())
    }

    fn alerts(&self, after: i64) -> Result<Vec<Alert>> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare(
                "SELECT id, at, severity, source, subject, message FROM alerts WHERE id > ?1
                 ORDER BY id",
            )
            .map_err(q("list alerts"))?;
        collect(
            st.query_map([after], alert_from)
                .map_err(q("list alerts"))?,
            "list alerts",
        )
    }
}
