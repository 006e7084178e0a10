//! Naming rules for rooms and users, checked by the server and useful to clients
//! that want to reject a bad name before sending it.

/// Longest room name, in characters.
pub const MAX_ROOM_NAME_LEN: usize = 64;
/// Longest user name, in characters.
pub const MAX_USERNAME_LEN: usize = 32;

/// Why a name was refused. The `Display` text is meant for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name must not be empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("name is longer than {max} characters")]
    TooLong {
        /// The limit that was exceeded.
        max: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error("name may only contain ASCII letters, digits, '-', '_' and '.' (found {found:?})")]
    BadCharacter {
        /// The first offending character.
        found: char,
    },
}

/// Checks a room name: 1 to 64 characters from `A-Z a-z 0-9 - _ .`.
///
/// Room names are case-sensitive. The set is ASCII on purpose: it keeps names
/// typeable everywhere and rules out look-alike characters.
pub fn validate_room_name(name: &str) -> Result<(), NameError> {
    validate(name, MAX_ROOM_NAME_LEN)
}

/// Checks a user name: 1 to 32 characters from `A-Z a-z 0-9 - _ .`.
///
/// User names are unique regardless of case (`Alice` and `alice` are one user).
pub fn validate_username(name: &str) -> Result<(), NameError> {
    validate(name, MAX_USERNAME_LEN)
}

fn validate(name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::BadCharacter { found });
    }
    // Every allowed character is one byte, so the byte length is the character count.
    if name.len() > max {
        return Err(NameError::TooLong { max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_names() {
        for name in ["general", "rust-lang", "team_42", "v1.2", "a"] {
            assert_eq!(validate_room_name(name), Ok(()), "{name}");
        }
        assert_eq!(validate_room_name(&"x".repeat(64)), Ok(()));
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(validate_room_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_room_name(&"x".repeat(65)),
            Err(NameError::TooLong { max: 64 })
        );
        assert_eq!(
            validate_room_name("has space"),
            Err(NameError::BadCharacter { found: ' ' })
        );
        assert_eq!(
            validate_room_name("café"),
            Err(NameError::BadCharacter { found: 'é' })
        );
        assert_eq!(
            validate_username(&"u".repeat(33)),
            Err(NameError::TooLong { max: 32 })
        );
        assert_eq!(
            validate_username("a\u{1b}[31m"),
            Err(NameError::BadCharacter { found: '\u{1b}' })
        );
    }
}
