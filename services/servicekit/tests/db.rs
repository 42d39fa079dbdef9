//! The database handle on real PostgreSQL and SQLite: migrations, URL forms, reconnecting,
//! concurrent SQLite writers, and idempotency keys.

use sqlx::Row;
use trellis_servicekit::testing::{fresh_database, test_databases};
use trellis_servicekit::{Backend, Db, DbError, IdemError, Idempotency, now_ms, sha256_hex};

#[tokio::test]
async fn migrations_run_on_both_backends() {
    let dbs = test_databases().await;
    assert_eq!(
        dbs.iter().map(|(b, _)| *b).collect::<Vec<_>>(),
        vec![Backend::Postgres, Backend::Sqlite]
    );
    for (backend, db) in dbs {
        assert_eq!(db.backend(), backend);
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = 1")
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(applied, 1, "{backend}");
        // Every column type of 0001 round-trips through the Any driver.
        sqlx::query(
            "INSERT INTO jwt_signing_keys (kid, sealed_private_key, public_key, created_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind("k")
        .bind(vec![1u8, 2, 3])
        .bind(vec![0u8; 32])
        .bind(now_ms())
        .execute(db.pool())
        .await
        .unwrap();
        let row = sqlx::query(
            "SELECT kid, sealed_private_key, public_key, created_ms, retired_ms \
             FROM jwt_signing_keys",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>(0), "k");
        assert_eq!(row.get::<Vec<u8>, _>(1), vec![1, 2, 3]);
        assert_eq!(row.get::<Vec<u8>, _>(2).len(), 32);
        assert!(row.get::<i64, _>(3) > 1_700_000_000_000, "{backend}");
        assert_eq!(row.get::<Option<i64>, _>(4), None);
        // NOT NULL holds on both (SQLite would take a NULL primary key without it).
        let null_kid = sqlx::query(
            "INSERT INTO jwt_signing_keys (kid, sealed_private_key, public_key, created_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(None::<String>)
        .bind(vec![1u8])
        .bind(vec![1u8])
        .bind(0i64)
        .execute(db.pool())
        .await;
        assert!(null_kid.is_err(), "{backend}");
    }
}

#[tokio::test]
async fn reconnecting_keeps_data_and_does_not_remigrate() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let (db, url) = fresh_database(backend).await;
        Idempotency::store(&db, "s", "k", "h", 201, "{}")
            .await
            .unwrap();
        db.close().await;
        let again = Db::connect(&url).await.unwrap();
        assert_eq!(
            Idempotency::lookup(&again, "s", "k", "h").await.unwrap(),
            Some((201, "{}".to_string())),
            "{backend}"
        );
        let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(again.pool())
            .await
            .unwrap();
        assert!(migrations >= 1);
    }
}

#[tokio::test]
async fn sqlite_url_forms_create_the_file_with_wal() {
    let dir = tempfile::tempdir().unwrap();
    for (i, form) in ["sqlite://", "sqlite:"].into_iter().enumerate() {
        let path = dir.path().join(format!("nested-{i}.db"));
        assert!(!path.exists());
        let db = Db::connect(&format!("{form}{}", path.display()))
            .await
            .unwrap();
        assert_eq!(db.backend(), Backend::Sqlite);
        assert!(path.exists(), "{form} did not create the file");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
        db.close().await;
    }
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_them() {
    let err = Db::connect("mysql://root:hunter2@localhost/x")
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::UnsupportedUrl(ref s) if s == "mysql"));
    assert!(!err.to_string().contains("hunter2"));
    let err = Db::connect("not a url at all").await.unwrap_err();
    assert!(matches!(err, DbError::UnsupportedUrl(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sqlite_writers_wait_instead_of_failing() {
    let (db, _) = fresh_database(Backend::Sqlite).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                // Read then write in one transaction: the pattern that fails at once in a
                // deferred SQLite transaction when another writer got in between.
                let mut tx = db.begin_write().await.unwrap();
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                sqlx::query(
                    "INSERT INTO idempotency_keys \
                     (scope, key, request_sha256, status, response_body, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(format!("t{t}"))
                .bind(format!("{i}"))
                .bind("h")
                .bind(200i32)
                .bind(n.to_string())
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 200);
    // Every transaction saw the count of the ones before it: no two read the same state.
    let bodies: Vec<String> = sqlx::query_scalar("SELECT response_body FROM idempotency_keys")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let mut seen: Vec<i64> = bodies.iter().map(|b| b.parse().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<i64>>());
}

#[tokio::test]
async fn idempotency_lookup_store_and_mismatch() {
    for (backend, db) in test_databases().await {
        let h1 = sha256_hex(b"{\"name\":\"a\"}");
        let h2 = sha256_hex(b"{\"name\":\"b\"}");
        assert_eq!(h1.len(), 64);
        assert_eq!(
            Idempotency::lookup(&db, "apply", "key-1", &h1)
                .await
                .unwrap(),
            None,
            "{backend}"
        );
        let stored = Idempotency::store(&db, "apply", "key-1", &h1, 201, r#"{"id":"x"}"#)
            .await
            .unwrap();
        assert_eq!(stored, (201, r#"{"id":"x"}"#.to_string()));
        assert_eq!(
            Idempotency::lookup(&db, "apply", "key-1", &h1)
                .await
                .unwrap(),
            Some((201, r#"{"id":"x"}"#.to_string())),
            "{backend}"
        );
        // Same key, different request: refused.
        assert!(matches!(
            Idempotency::lookup(&db, "apply", "key-1", &h2).await,
            Err(IdemError::Mismatch)
        ));
        // The same key in another scope is another key.
        assert_eq!(
            Idempotency::lookup(&db, "other", "key-1", &h2)
                .await
                .unwrap(),
            None
        );
        // A racing second store of the same request gets the first answer back.
        let again = Idempotency::store(&db, "apply", "key-1", &h1, 500, "late")
            .await
            .unwrap();
        assert_eq!(again, (201, r#"{"id":"x"}"#.to_string()), "{backend}");
        // And one with a different request is a mismatch.
        assert!(matches!(
            Idempotency::store(&db, "apply", "key-1", &h2, 201, "{}").await,
            Err(IdemError::Mismatch)
        ));
        // Purging old keys.
        assert_eq!(
            Idempotency::purge_before(&db, now_ms() - 60_000)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            Idempotency::purge_before(&db, now_ms() + 1).await.unwrap(),
            1,
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_races_have_one_winner() {
    for (backend, db) in test_databases().await {
        let mut tasks = Vec::new();
        for i in 0..8u16 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                Idempotency::store(&db, "race", "k", "h", 200 + i, &format!("body {i}")).await
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap());
        }
        answers.dedup();
        assert_eq!(answers.len(), 1, "{backend}: {answers:?}");
        assert_eq!(
            Idempotency::lookup(&db, "race", "k", "h").await.unwrap(),
            Some(answers[0].clone())
        );
    }
}

#[tokio::test]
async fn idempotency_store_in_a_transaction_commits_or_rolls_back_with_it() {
    for (backend, db) in test_databases().await {
        // Rolled back: nothing stored.
        let mut tx = db.begin_write().await.unwrap();
        let stored = Idempotency::store_in(&mut tx, "apply", "k", "h1", 201, "first")
            .await
            .unwrap();
        assert_eq!(stored, (201, "first".to_string()));
        tx.rollback().await.unwrap();
        assert_eq!(
            Idempotency::lookup(&db, "apply", "k", "h1").await.unwrap(),
            None,
            "{backend}"
        );
        // Committed: stored.
        let mut tx = db.begin_write().await.unwrap();
        Idempotency::store_in(&mut tx, "apply", "k", "h1", 201, "second")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            Idempotency::lookup(&db, "apply", "k", "h1").await.unwrap(),
            Some((201, "second".to_string())),
            "{backend}"
        );
        // A later store in a transaction gets the standing answer back, or a mismatch.
        let mut tx = db.begin_write().await.unwrap();
        assert_eq!(
            Idempotency::store_in(&mut tx, "apply", "k", "h1", 500, "late")
                .await
                .unwrap(),
            (201, "second".to_string()),
            "{backend}"
        );
        assert!(matches!(
            Idempotency::store_in(&mut tx, "apply", "k", "h2", 201, "other").await,
            Err(IdemError::Mismatch)
        ));
        tx.rollback().await.unwrap();
    }
}

#[tokio::test]
async fn idempotency_purge_of_one_scope_leaves_the_others() {
    for (backend, db) in test_databases().await {
        for (scope, key) in [("mine", "a"), ("mine", "b"), ("theirs", "a")] {
            Idempotency::store(&db, scope, key, "h", 201, "{}")
                .await
                .unwrap();
        }
        assert_eq!(
            Idempotency::purge_scope_before(&db, "mine", now_ms() - 60_000)
                .await
                .unwrap(),
            0,
            "{backend}"
        );
        assert_eq!(
            Idempotency::purge_scope_before(&db, "mine", now_ms() + 1)
                .await
                .unwrap(),
            2,
            "{backend}"
        );
        assert_eq!(
            Idempotency::lookup(&db, "mine", "a", "h").await.unwrap(),
            None
        );
        assert_eq!(
            Idempotency::lookup(&db, "theirs", "a", "h").await.unwrap(),
            Some((201, "{}".to_string())),
            "{backend}"
        );
    }
}
