//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the
//! files of `migrations/`, but the compiler watches only the ones it has seen.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
