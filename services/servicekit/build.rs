//! `sqlx::migrate!` embeds the migration files at compile time; without this, a migration
//! added by another crate would not be picked up until servicekit itself changed.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
