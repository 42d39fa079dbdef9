//! One database handle over PostgreSQL or SQLite ([`Db`]), migrated at connect.
//!
//! Services talk to both backends through sqlx's `Any` driver, so the schema keeps to the
//! types it carries: BIGINT/INTEGER as `i64`, TEXT, BYTEA/BLOB, BOOLEAN, DOUBLE. Times are unix
//! milliseconds ([`now_ms`]), ids are TEXT. Queries use `$1, $2, …` in order (SQLite accepts
//! them too). The SQL of the two backends differs, so each has its own migration folder:
//! `migrations/postgres` and `migrations/sqlite` at the workspace root, numbered `0001_…`,
//! `0002_…` in step.

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Connection, SqlSafeStr, Transaction};
use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `POSTGRES` and `SQLITE`: (version, description, SQL) of every migration file, from build.rs.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

static POSTGRES_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| migrator(embedded::POSTGRES));
static SQLITE_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| migrator(embedded::SQLITE));

/// What `sqlx::migrate!` would build from the same files: the checksum is over the file's text,
/// so databases migrated by either agree.
fn migrator(files: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// A SQLite writer waits up to 15 s for the write lock before failing with "database is locked".
const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 15000";
/// SQLite allows one writer at a time: more connections only queue on its lock.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL (`postgres://…` or `postgresql://…`).
    Postgres,
    /// SQLite (`sqlite://PATH` or `sqlite:PATH`).
    Sqlite,
}

impl Backend {
    /// `postgres` or `sqlite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`Db::connect`] failed. Never shows the URL, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names no supported backend.
    #[error("unsupported database URL (scheme `{0}`): use postgres://… or sqlite:PATH")]
    UnsupportedUrl(String),
    /// Connecting or querying failed.
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed or does not match what the database recorded.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A migrated connection pool over PostgreSQL or SQLite. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `postgres://…`, `postgresql://…`, `sqlite://PATH` or `sqlite:PATH` and
    /// runs the migrations of that backend. A SQLite file is created when missing, runs in WAL
    /// mode with foreign keys on, and writers wait for each other instead of failing.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let scheme = url.split(':').next().unwrap_or("");
        let db = match scheme {
            "postgres" | "postgresql" => Db {
                pool: AnyPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await?,
                backend: Backend::Postgres,
            },
            "sqlite" => Db {
                pool: connect_sqlite(url).await?,
                backend: Backend::Sqlite,
            },
            other => {
                // Only a plausible scheme is echoed, so a mistyped URL cannot leak a password.
                let shown = if other.len() <= 16 && other.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    other
                } else {
                    "?"
                };
                return Err(DbError::UnsupportedUrl(shown.to_string()));
            }
        };
        db.migrator().run(&db.pool).await?;
        Ok(db)
    }

    /// The backend this handle runs on, for the few queries whose SQL differs.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for `sqlx::query(..).execute(db.pool())`.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then writes fails at
    /// once with "database is locked" if another writer committed meanwhile, without waiting.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Postgres => self.pool.begin().await,
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
        }
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        }
    }
}

async fn connect_sqlite(url: &str) -> Result<AnyPool, sqlx::Error> {
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    // Create the file when missing, unless the URL says otherwise.
    let url = if memory || url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    if !memory {
        // WAL is a property of the file, set once: doing it on every new connection would
        // need an exclusive lock that the busy timeout does not wait for.
        let mut conn = sqlx::AnyConnection::connect(&url).await?;
        sqlx::query("PRAGMA journal_mode = WAL")
            .fetch_optional(&mut conn)
            .await?;
        conn.close().await?;
    }
    let options = AnyPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // Set here rather than relying on the driver's defaults, which may change.
                sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(SQLITE_BUSY_TIMEOUT)
                    .fetch_optional(&mut *conn)
                    .await?;
                Ok(())
            })
        });
    let options = if memory {
        // Each connection to `:memory:` is its own database: keep exactly one, forever.
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        options.max_connections(SQLITE_MAX_CONNECTIONS)
    };
    options.connect(&url).await
}

/// Milliseconds since the unix epoch, the time format of every table.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
