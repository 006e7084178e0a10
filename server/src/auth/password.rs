//! Password hashing with argon2id, in working memory reused from one hash to
//! the next.
//!
//! argon2 needs `m_cost` KiB of working memory per hash (19 MiB with the
//! defaults). Allocated and freed for every hash, as the argon2 crate's
//! `PasswordHasher` does, these buffers push glibc's mmap threshold up to
//! their size, after which freed buffers stay in the heap: an idle server
//! held 579 to 810 MB after a registration flood (issue 15, finding 4). Here
//! a hash borrows a buffer from a small pool and gives it back, so a server
//! keeps at most one per concurrent hash (one per CPU behind the hashing
//! permits), allocated once.

use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand_core::OsRng;

/// Buffers kept for reuse. More than the hashing permits allow at once only
/// when hashes run outside them (the command line's `user add`), and those
/// few are dropped rather than kept.
const POOLED: usize = 16;

/// Idle working memories of the default size.
static POOL: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `work` with `count` blocks of working memory, pooled when `count` is
/// the default parameters' (every hash this server makes), fresh otherwise
/// (a hash stored with other parameters).
fn with_memory<T>(count: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    let pooled = count == Params::default().block_count();
    let mut blocks = pooled
        .then(|| POOL.lock().unwrap_or_else(|e| e.into_inner()).pop())
        .flatten()
        .unwrap_or_else(|| vec![Block::default(); count]);
    let result = work(&mut blocks);
    if pooled {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED {
            pool.push(blocks);
        }
    }
    result
}

/// The argon2 output for `password` and `salt` under `argon`, of `len` bytes.
fn compute(
    argon: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: argon2::password_hash::Salt<'_>,
    len: usize,
) -> Result<Output, argon2::password_hash::Error> {
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    Output::init_with(len, |out| {
        with_memory(params.block_count(), |blocks| {
            argon.hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
        })
        .map_err(Into::into)
    })
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`),
/// with the crate's defaults, which follow OWASP's recommended argon2id settings.
pub(crate) fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let output = compute(
        &argon,
        &params,
        password,
        salt.as_salt(),
        Params::DEFAULT_OUTPUT_LEN,
    )?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Checks a password against a stored PHC string, in constant time over the
/// output; a malformed hash never matches.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    let check = || -> Result<bool, argon2::password_hash::Error> {
        let parsed = PasswordHash::new(phc)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Ok(false);
        };
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let params = Params::try_from(&parsed)?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let computed = compute(&argon, &params, password, salt, expected.len())?;
        // `Output`'s equality is constant-time.
        Ok(computed == expected)
    };
    check().unwrap_or(false)
}

/// Spends the same time as a real check, for logins naming an unknown user, so
/// that response time does not tell which user names exist.
pub(crate) fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("not a real password").unwrap_or_default());
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHasher;

    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let phc = hash("correct horse").expect("hashes");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse", &phc));
        assert!(!verify("wrong horse", &phc));
        assert!(!verify("correct horse", "not a phc string"));
        assert_ne!(phc, hash("correct horse").expect("hashes"), "salted");
    }

    #[test]
    fn hashes_of_the_argon2_crate_verify_and_the_other_way_round() {
        // Accounts stored before the pooled memory, hashed by the crate itself.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hashes")
            .to_string();
        assert!(verify("correct horse", &theirs));
        assert!(!verify("wrong horse", &theirs));

        let ours = hash("correct horse").expect("hashes");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(argon2::PasswordVerifier::verify_password(
            &Argon2::default(),
            b"correct horse",
            &parsed
        )
        .is_ok());
    }

    #[test]
    fn other_parameters_are_honoured_with_memory_of_their_own() {
        let params = Params::new(64, 1, 1, None).expect("params");
        let salt = SaltString::generate(&mut OsRng);
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw-pw-pw-pw", &salt)
            .expect("hashes")
            .to_string();
        assert!(small.contains("m=64,t=1,p=1"), "{small}");
        assert!(verify("pw-pw-pw-pw", &small));
        assert!(!verify("pw-pw-pw-pX", &small));
    }
}
