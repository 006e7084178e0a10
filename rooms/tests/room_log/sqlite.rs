//! The shared behaviour against the embedded SQLite log.

crate::all_behaviour_tests!(Some(crate::Sqlite));
