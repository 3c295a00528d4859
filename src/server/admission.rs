//! Which session tokens may open a WebSocket. In open mode any well-formed token starts a
//! liveness session (the seed's load test and development rely on it); otherwise only tokens
//! issued first (by the REST side, when it exists) are admitted.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::server::protocol::{close, token_is_well_formed};

#[derive(Debug)]
pub struct Admission {
    open: bool,
    issued: RwLock<HashSet<String>>,
}

impl Admission {
    pub fn new(open: bool) -> Self {
        Self {
            open,
            issued: RwLock::default(),
        }
    }

    /// Records a token that a client may then connect with.
    pub fn issue(&self, token: &str) {
        self.issued
            .write()
            .expect("the token set is never poisoned")
            .insert(token.to_owned());
    }

    /// `Ok` to start a session, or the close code that refuses it.
    pub fn admit(&self, token: &str) -> Result<(), u16> {
        if !token_is_well_formed(token) {
            return Err(close::MALFORMED_TOKEN);
        }
        let issued = self.issued.read().expect("the token set is never poisoned");
        if self.open || issued.contains(token) {
            Ok(())
        } else {
            Err(close::UNKNOWN_SESSION)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_mode_admits_any_well_formed_token() {
        let admission = Admission::new(true);
        assert_eq!(admission.admit("test_1"), Ok(()));
        assert_eq!(admission.admit("no spaces"), Err(close::MALFORMED_TOKEN));
    }

    #[test]
    fn closed_mode_admits_only_issued_tokens() {
        let admission = Admission::new(false);
        assert_eq!(admission.admit("abc"), Err(close::UNKNOWN_SESSION));
        admission.issue("abc");
        assert_eq!(admission.admit("abc"), Ok(()));
        assert_eq!(admission.admit("no/slashes"), Err(close::MALFORMED_TOKEN));
    }
}
