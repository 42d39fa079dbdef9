//! Test support for every service crate: a fresh, migrated database on each backend, so one
//! test suite runs against PostgreSQL and SQLite alike. Not behind `cfg(test)` because other
//! crates' integration tests use it.
//!
//! PostgreSQL: a new database `trellis_test_<16 hex>` on the server at
//! `TRELLIS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), whose
//! user must be allowed to `CREATE DATABASE`. SQLite: a file in a new temporary directory.
//! Both are swept by a later test process once they are two hours old (a PostgreSQL database
//! takes ~8 MB), so test runs do not fill the disk.

use crate::db::{Backend, Db, now_ms};
use sqlx::{Connection, Row};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_VAR: &str = "TRELLIS_TEST_POSTGRES_URL";
/// Where tests find PostgreSQL when the variable is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Name prefix of test databases and directories.
const PREFIX: &str = "trellis_test_";
/// Test databases older than this are dropped by the next test process.
const SWEEP_AFTER_MS: i64 = 2 * 3600 * 1000;

/// A fresh migrated database on each backend: PostgreSQL first, then SQLite.
///
/// # Panics
/// When PostgreSQL cannot be reached or the database cannot be created or migrated; the
/// message says how to start it.
pub async fn test_databases() -> Vec<(Backend, Db)> {
    let mut out = Vec::with_capacity(2);
    for backend in [Backend::Postgres, Backend::Sqlite] {
        out.push((backend, fresh_database(backend).await.0));
    }
    out
}

/// A fresh migrated database on `backend`, and its URL so a test can connect again (a
/// simulated restart) with [`Db::connect`].
///
/// # Panics
/// As [`test_databases`].
pub async fn fresh_database(backend: Backend) -> (Db, String) {
    let url = match backend {
        Backend::Postgres => create_postgres_database().await,
        Backend::Sqlite => create_sqlite_file(),
    };
    let db = Db::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open the fresh {backend} test database: {e}"));
    (db, url)
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    // Without randomness tests would share databases; there is no sensible fallback.
    aws_lc_rs::rand::fill(&mut b).expect("system random generator");
    hex::encode(b)
}

fn admin_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string())
}

async fn create_postgres_database() -> String {
    sqlx::any::install_default_drivers();
    let admin = admin_url();
    let connect = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::AnyConnection::connect(&admin),
    )
    .await;
    let mut conn = match connect {
        Ok(Ok(c)) => c,
        failure => {
            let why = match failure {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out after 10 s".to_string(),
            };
            panic!(
                "tests need PostgreSQL at {} (set {POSTGRES_URL_VAR}; default \
                 {DEFAULT_POSTGRES_URL}) and could not reach it: {why}. Start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                 (install: `apt-get install postgresql`, trust auth for 127.0.0.1), or point \
                 {POSTGRES_URL_VAR} at a server whose user may CREATE DATABASE.",
                redact(&admin)
            )
        }
    };
    sweep_postgres(&mut conn).await;
    let name = format!("{PREFIX}{}", random_hex());
    // The name is our prefix and hex digits only, so formatting it into SQL is safe.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    // Remembered on the database itself, so a later run knows when to drop it.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "COMMENT ON DATABASE {name} IS 'trellis test, created_ms={}'",
        now_ms()
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("cannot mark test database {name}: {e}"));
    let _ = conn.close().await;
    let mut opts: sqlx::any::AnyConnectOptions = admin
        .parse()
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is not a URL: {e}"));
    opts.database_url.set_path(&format!("/{name}"));
    opts.database_url.to_string()
}

/// Drops test databases left by runs more than two hours ago (once per process; best effort).
async fn sweep_postgres(conn: &mut sqlx::AnyConnection) {
    static ONCE: Once = Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let rows = sqlx::query(
        "SELECT datname::text, COALESCE(shobj_description(oid, 'pg_database'), '') \
         FROM pg_database WHERE datname LIKE 'trellis\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    let now = now_ms();
    for row in rows {
        let (Ok(name), Ok(comment)) = (row.try_get::<String, _>(0), row.try_get::<String, _>(1))
        else {
            continue;
        };
        let created = comment
            .rsplit("created_ms=")
            .next()
            .and_then(|s| s.parse::<i64>().ok());
        let safe = name.len() == PREFIX.len() + 16
            && name[PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit());
        if safe && created.is_some_and(|c| now - c > SWEEP_AFTER_MS) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

fn create_sqlite_file() -> String {
    sweep_sqlite();
    let dir = std::env::temp_dir().join(format!("{PREFIX}{}", random_hex()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create test directory {}: {e}", dir.display()));
    format!("sqlite://{}", dir.join("db.sqlite").display())
}

/// Removes test directories more than two hours old (once per process; best effort).
fn sweep_sqlite() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        let old = Duration::from_millis(SWEEP_AFTER_MS as u64);
        for entry in entries.flatten() {
            let path: PathBuf = entry.path();
            let is_ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX));
            let aged = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > old);
            if is_ours && aged && path.is_dir() {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    });
}

/// A URL with its password replaced, for messages.
fn redact(url: &str) -> String {
    match url.parse::<sqlx::any::AnyConnectOptions>() {
        Ok(mut o) if o.database_url.password().is_some() => {
            let _ = o.database_url.set_password(Some("***"));
            o.database_url.to_string()
        }
        Ok(o) => o.database_url.to_string(),
        Err(_) => "(unparseable URL)".to_string(),
    }
}
