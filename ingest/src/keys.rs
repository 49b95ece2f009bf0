//! The deployment secret and the pseudonyms derived from it.
//!
//! One 32-byte secret per deployment, kept in a file with mode 0600 outside the dataset directory.
//! Purpose keys are derived from it with `blake3::derive_key` (one per use, so a record key can
//! never be confused with a person key); pseudonyms are `blake3::keyed_hash` under a purpose key.
//! An unkeyed hash of a name and birth date falls to a dictionary attack in seconds: every hash
//! of identifying material here is keyed.
//!
//! The dataset records a key id (a derived fingerprint of the secret), never the secret. Losing
//! the secret means new pseudonyms that no longer link to old ones.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ctstats_schemas::codes::PersonLinkQuality;

use crate::identity::LinkMaterial;

const CONTEXT_KEY_ID: &str = "ctstats 2026-11-28 key id v1";
const CONTEXT_PERSON: &str = "ctstats 2026-11-28 person link v1";
const CONTEXT_RECORD: &str = "ctstats 2026-11-28 record key v1";
const CONTEXT_CONTENT: &str = "ctstats 2026-11-28 batch content v1";

/// Problems with the deployment secret. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the key file {path} already exists; refusing to overwrite it (a new key breaks linking with every batch ingested before)"
    )]
    Exists { path: PathBuf },
    #[error(
        "the key file {path} is inside the dataset directory {dataset}; keep the secret outside the data it protects"
    )]
    InsideDataset { path: PathBuf, dataset: PathBuf },
    #[error(
        "the key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the key file {path} is not a ctstats key (expected 64 hexadecimal characters)")]
    Malformed { path: PathBuf },
    #[error("no secure random source: {0}")]
    Random(String),
}

/// The deployment secret. Its `Debug` shows only the key id.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(key_id={})", self.key_id())
    }
}

impl Secret {
    /// A fresh secret from the operating system's secure random source.
    pub fn generate() -> Result<Secret, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Secret(bytes))
    }

    /// A secret from known bytes: for tests and known-answer checks only.
    pub fn from_bytes(bytes: [u8; 32]) -> Secret {
        Secret(bytes)
    }

    /// Load the secret from `path`, refusing a file other users can read.
    pub fn load(path: &Path) -> Result<Secret, KeyError> {
        let meta = fs::metadata(path).map_err(|source| KeyError::Read {
            path: path.into(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.into(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.into(),
            source,
        })?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| KeyError::Malformed { path: path.into() })?;
        Ok(Secret(bytes))
    }

    /// Write a new secret to `path` with mode 0600. Refuses to overwrite, and refuses a path
    /// inside `dataset` when one is given.
    pub fn write_new(&self, path: &Path, dataset: Option<&Path>) -> Result<(), KeyError> {
        if let Some(dataset) = dataset {
            let abs = |p: &Path| {
                let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
                p.parent()
                    .and_then(|d| {
                        fs::canonicalize(d)
                            .ok()
                            .map(|d| d.join(p.file_name().unwrap_or_default()))
                    })
                    .unwrap_or(p)
            };
            let (key, data) = (
                abs(path),
                fs::canonicalize(dataset).unwrap_or_else(|_| abs(dataset)),
            );
            if key.starts_with(&data) {
                return Err(KeyError::InsideDataset {
                    path: path.into(),
                    dataset: dataset.into(),
                });
            }
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists { path: path.into() },
                _ => KeyError::Write {
                    path: path.into(),
                    source,
                },
            })?;
        let write = |file: &mut fs::File| -> std::io::Result<()> {
            file.write_all(hex::encode(self.0).as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        };
        write(&mut file).map_err(|source| KeyError::Write {
            path: path.into(),
            source,
        })
    }

    /// The public fingerprint of this secret, recorded with every batch.
    pub fn key_id(&self) -> String {
        hex::encode(&blake3::derive_key(CONTEXT_KEY_ID, &self.0)[..8])
    }

    /// The purpose keys derived from this secret.
    pub fn purpose_keys(&self) -> PurposeKeys {
        PurposeKeys {
            person: blake3::derive_key(CONTEXT_PERSON, &self.0),
            record: blake3::derive_key(CONTEXT_RECORD, &self.0),
            content: blake3::derive_key(CONTEXT_CONTENT, &self.0),
            key_id: self.key_id(),
        }
    }
}

/// Keys for each kind of pseudonym.
#[derive(Clone)]
pub struct PurposeKeys {
    person: [u8; 32],
    record: [u8; 32],
    content: [u8; 32],
    key_id: String,
}

impl std::fmt::Debug for PurposeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PurposeKeys(key_id={})", self.key_id)
    }
}

/// Length of a stored pseudonym in hex characters (128 bits).
pub const PSEUDONYM_HEX_LEN: usize = 32;

fn pseudonym(key: &[u8; 32], parts: &[&[u8]]) -> String {
    let mut hasher = blake3::Hasher::new_keyed(key);
    for part in parts {
        // Length-prefix every part so ("ab", "c") and ("a", "bc") never collide.
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let hash = hasher.finalize();
    hex::encode(&hash.as_bytes()[..PSEUDONYM_HEX_LEN / 2])
}

impl PurposeKeys {
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The record key of an organisation's local case id.
    pub fn record_key(&self, org: &str, local_case_id: &str) -> String {
        pseudonym(
            &self.record,
            &[org.as_bytes(), local_case_id.trim().as_bytes()],
        )
    }

    /// The person key for an identity, with the rule that produced it. A record that cannot be
    /// linked gets a key of its own, derived from its record key, so it counts as its own person.
    /// The pipeline reaches this only through [`crate::pseudonymise`].
    pub fn person_key(
        &self,
        material: &LinkMaterial,
        record_key: &str,
    ) -> (String, PersonLinkQuality) {
        match material {
            LinkMaterial::Document(doc) => (
                pseudonym(&self.person, &[b"document", doc.as_bytes()]),
                PersonLinkQuality::DocumentId,
            ),
            LinkMaterial::NameDobCitizenship(name, dob, cit) => (
                pseudonym(
                    &self.person,
                    &[
                        b"name_dob_citizenship",
                        name.as_bytes(),
                        dob.to_string().as_bytes(),
                        cit.as_bytes(),
                    ],
                ),
                PersonLinkQuality::NameDobCitizenship,
            ),
            LinkMaterial::NameDob(name, dob) => (
                pseudonym(
                    &self.person,
                    &[b"name_dob", name.as_bytes(), dob.to_string().as_bytes()],
                ),
                PersonLinkQuality::Weak,
            ),
            LinkMaterial::None => (
                pseudonym(&self.person, &[b"unlinked", record_key.as_bytes()]),
                PersonLinkQuality::None,
            ),
        }
    }

    /// A keyed hasher for the content of a source file, used to spot re-submitted files.
    pub fn content_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::RawIdentity;
    use chrono::NaiveDate;

    fn test_secret() -> Secret {
        Secret::from_bytes(*b"ctstats-test-key-0123456789abcde")
    }

    /// If this test ever fails, old and new batches stop linking. Changing it must be a decision.
    /// The expected values were computed independently with the Python `blake3` package:
    /// derive_key(context, secret), then keyed_hash over length-prefixed (u64 LE) parts,
    /// truncated to 16 bytes.
    #[test]
    fn known_answer_pseudonyms() {
        let keys = test_secret().purpose_keys();
        assert_eq!(keys.key_id(), "5f388cb9cc533014");
        let record = keys.record_key("ngo-bishkek-1", "KG-2005-0042");
        assert_eq!(record, "e27e29833935f1233373f05e3a4ca3ff");
        let identity = RawIdentity {
            first_name: Some("Айгуль".into()),
            last_name: Some("Асанова".into()),
            birth_date: NaiveDate::from_ymd_opt(1987, 3, 14),
            citizenship: Some("KGZ"),
            ..Default::default()
        };
        let (person, quality) = keys.person_key(&identity.link_material(), &record);
        assert_eq!(quality, PersonLinkQuality::NameDobCitizenship);
        assert_eq!(person, "845ae69e4af05d4e5a7610889234c830");
    }

    #[test]
    fn same_person_in_two_scripts_links() {
        let keys = test_secret().purpose_keys();
        let dob = NaiveDate::from_ymd_opt(1987, 3, 14);
        let cyr = RawIdentity {
            full_name: Some("Асанова Айгуль".into()),
            birth_date: dob,
            citizenship: Some("KGZ"),
            ..Default::default()
        };
        let lat = RawIdentity {
            first_name: Some("AIGUL".into()),
            last_name: Some("Asanova".into()),
            birth_date: dob,
            citizenship: Some("KGZ"),
            ..Default::default()
        };
        let a = keys.person_key(&cyr.link_material(), "r1");
        let b = keys.person_key(&lat.link_material(), "r2");
        assert_eq!(a, b);
        let other = keys.person_key(&RawIdentity::default().link_material(), "r1");
        let other2 = keys.person_key(&RawIdentity::default().link_material(), "r2");
        assert_ne!(other.0, other2.0, "unlinked records are distinct persons");
    }

    #[test]
    fn key_file_round_trip_and_guards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctstats.key");
        let secret = Secret::generate().unwrap();
        secret.write_new(&path, None).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Secret::load(&path).unwrap().key_id(), secret.key_id());
        assert!(matches!(
            secret.write_new(&path, None),
            Err(KeyError::Exists { .. })
        ));

        let data = dir.path().join("dataset");
        fs::create_dir(&data).unwrap();
        let inside = data.join("key");
        assert!(matches!(
            secret.write_new(&inside, Some(&data)),
            Err(KeyError::InsideDataset { .. })
        ));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Secret::load(&path),
            Err(KeyError::Permissions { .. })
        ));
        let shown = format!("{secret:?}");
        assert!(!shown.contains(&hex::encode(secret.0)));
    }
}
