//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the
//! files it found at compile time and would not notice a new one.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
