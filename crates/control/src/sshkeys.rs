//! SSH key material for the key pair family (API reference: CreateKeyPair, ImportKeyPair):
//! a new RSA key pair, a public key checked as OpenSSH writes it, and the fingerprint ECS
//! answers (MD5 over the public key blob, the RFC 4716 form: lower-case hex pairs joined by
//! colons, as `ssh-keygen -l -E md5` prints). The cryptography is the `rsa` and `ssh-key`
//! crates'.

use md5::{Digest, Md5};
use ssh_key::public::{KeyData, PublicKey};

/// Bits of a key CreateKeyPair makes (ECS makes 2048-bit RSA keys).
pub const GENERATED_BITS: usize = 2048;

/// Fewer bits than this and an imported RSA key is refused (the `ssh-key` crate's floor;
/// OpenSSH has made 3072-bit keys by default for years).
pub const MIN_IMPORTED_RSA_BITS: usize = 2048;

/// Why key material could not be made or taken.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating an RSA key failed")]
    Generate(#[from] rsa::Error),
    #[error("encoding a key failed")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the public key is not an OpenSSH public key of a supported type")]
    Unsupported,
}

/// A key pair CreateKeyPair made.
pub struct Generated {
    /// The private key, PEM (`-----BEGIN RSA PRIVATE KEY-----`, PKCS#1, as the reference's
    /// example body `MIIEpAIBAAKCAQEA…` is).
    pub private_pem: String,
    /// The public key, one OpenSSH line (`ssh-rsa AAAA…`).
    pub public_openssh: String,
    pub fingerprint: String,
}

/// A public key ImportKeyPair took.
#[derive(Debug, PartialEq, Eq)]
pub struct Imported {
    /// The key as one OpenSSH line, without the comment it may have had.
    pub public_openssh: String,
    pub fingerprint: String,
}

fn encode_err(e: impl std::error::Error + Send + Sync + 'static) -> KeyError {
    KeyError::Encode(Box::new(e))
}

/// MD5 over the key's wire blob, `aa:bb:…`.
fn fingerprint(key: &PublicKey) -> Result<String, KeyError> {
    let blob = key.to_bytes().map_err(encode_err)?;
    let digest = Md5::digest(&blob);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

/// A fresh [`GENERATED_BITS`]-bit RSA key pair.
pub fn generate() -> Result<Generated, KeyError> {
    use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, GENERATED_BITS)?;
    let private_pem = private.to_pkcs1_pem(LineEnding::LF).map_err(encode_err)?.to_string();
    let public = ssh_key::public::RsaPublicKey::try_from(private.to_public_key()).map_err(encode_err)?;
    let key = PublicKey::from(KeyData::Rsa(public));
    Ok(Generated {
        public_openssh: key.to_openssh().map_err(encode_err)?,
        fingerprint: fingerprint(&key)?,
        private_pem,
    })
}

/// `body` as ImportKeyPair takes it: one OpenSSH public key line (`ssh-rsa`, `ssh-ed25519` or
/// `ecdsa-sha2-nistp256/384/521`, base64 blob, optional comment); RSA keys of at least
/// [`MIN_IMPORTED_RSA_BITS`] bits. Anything else is [`KeyError::Unsupported`].
pub fn import(body: &str) -> Result<Imported, KeyError> {
    let key = PublicKey::from_openssh(body.trim()).map_err(|_| KeyError::Unsupported)?;
    match key.key_data() {
        KeyData::Rsa(rsa_key) => {
            // The conversion checks the key (and has the same floor).
            let parsed = rsa::RsaPublicKey::try_from(rsa_key).map_err(|_| KeyError::Unsupported)?;
            if rsa::traits::PublicKeyParts::size(&parsed).saturating_mul(8) < MIN_IMPORTED_RSA_BITS {
                return Err(KeyError::Unsupported);
            }
        }
        KeyData::Ed25519(_) | KeyData::Ecdsa(_) => {}
        _ => return Err(KeyError::Unsupported),
    }
    let bare = PublicKey::from(key.key_data().clone());
    Ok(Imported { public_openssh: bare.to_openssh().map_err(encode_err)?, fingerprint: fingerprint(&bare)? })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Keys made by `ssh-keygen`, with the fingerprints `ssh-keygen -l -E md5` printed for them.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHMUxZRhx0SirriF9gPF8unAYEjf1GU0U2ZOTwegYej+ a comment";
    const ED25519_MD5: &str = "86:65:2c:6e:77:77:73:80:9d:c5:01:29:f8:80:0e:de";
    const RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCewFKmlpnSMYSTIb4+ZpCXA75lEFT26GgkDvNiarkh7kra9UAzcSWR+4CFyKhuptMmjKJLF5Srv6T8IsuOpoAiTjjPgHjPYTgJ9+/aK1n93WSsEcMQ+WcJ7EjJWal8IYpkEU0uSxtVN/eTVOyLzUUCaYzpCUKjgxGvNzWqn/S7LQ== root@vm";
    const RSA2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCyPfIVnB/dyQ3Z1OQU4li03AuhDO0vckkxrxxgta1x75BXejxxfkdGD16Lf8SkwQg2yF5Mux7Tkzyx4ADMorbF7mBjpo8iWeZHWBrGiIKTp6FX+AjJByA57sMnHhyt+4q2nj/4WVwK2dWPukEylJ7129ozn81W+8gT8QqOZLPr57JQIR3AhOK4417k9bMI/JsyDOvOzXs5j8fyQPbbmE52iVT6mgWF/TFcvo2J75VmCNBSIWq8AXxI7vpzfnWjKOJujGJXCK4KainVzDpmBmy7FnnLMkhZ4/1rJi6Zu7Y/zkH0cl+GTm5yoFACdRKzLNIl+Oq/yFxl48AnFdEJyY5p";
    const RSA2048_MD5: &str = "14:62:57:99:a3:94:3d:1d:f3:f1:f2:5c:0f:47:39:6c";

    #[test]
    fn fingerprints_are_what_ssh_keygen_prints() {
        assert_eq!(import(ED25519).unwrap().fingerprint, ED25519_MD5);
        assert_eq!(import(RSA2048).unwrap().fingerprint, RSA2048_MD5);
        assert!(matches!(import(RSA1024), Err(KeyError::Unsupported)), "below the RSA floor");
    }

    #[test]
    fn generated_keys_are_rsa_2048_and_fingerprint_their_public_half() {
        let g = generate().unwrap();
        assert!(g.private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(g.public_openssh.starts_with("ssh-rsa AAAA"));
        let again = import(&g.public_openssh).unwrap();
        assert_eq!(again.fingerprint, g.fingerprint);
        assert_eq!(g.fingerprint.len(), 16 * 3 - 1);
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let back = rsa::RsaPrivateKey::from_pkcs1_pem(&g.private_pem).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&back), 256);
    }

    #[test]
    fn imports_drop_the_comment_and_refuse_what_is_not_a_key() {
        let k = import(ED25519).unwrap();
        assert!(!k.public_openssh.contains("comment"));
        assert_eq!(k, import(&format!("  {}\n", k.public_openssh)).unwrap());
        for bad in ["", "ssh-rsa", "ssh-rsa !!!notbase64", "hello world", "-----BEGIN PUBLIC KEY-----"] {
            assert!(matches!(import(bad), Err(KeyError::Unsupported)), "{bad}");
        }
    }
}
