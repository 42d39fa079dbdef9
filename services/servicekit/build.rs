//! Embeds the migrations (`migrations/{postgres,sqlite}/NNNN_name.sql` at the workspace root)
//! as a table of (version, description, SQL) that `db.rs` turns into sqlx migrators. sqlx's
//! `migrate!` macro does the same, but its proc macro builds both database drivers (SQLite's C
//! source included) a second time for the host; this build script needs only std.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::new();
    for backend in ["postgres", "sqlite"] {
        let dir = root.join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        writeln!(
            out,
            "pub(crate) const {}: &[(i64, &str, &str)] = &[",
            backend.to_uppercase()
        )
        .expect("a String takes writes");
        for path in files {
            println!("cargo:rerun-if-changed={}", path.display());
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            // The same reading of a file name as sqlx's: version, `_`, description.
            let Some((version, description)) = stem.split_once('_') else {
                panic!(
                    "{}: a migration is named NNNN_description.sql",
                    path.display()
                );
            };
            let version: i64 = version.parse().unwrap_or_else(|_| {
                panic!(
                    "{}: the name must start with a version number",
                    path.display()
                )
            });
            assert!(
                !description.ends_with(".up") && !description.ends_with(".down"),
                "{}: reversible migrations are not used here",
                path.display()
            );
            let description = description.replace('_', " ");
            writeln!(
                out,
                "    ({version}, {description:?}, include_str!({:?})),",
                path.display()
            )
            .expect("a String takes writes");
        }
        out.push_str("];\n");
    }
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}
