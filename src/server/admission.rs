//! Which session tokens may open a WebSocket. In open mode any well-formed token starts a
//! liveness session (the seed's load test and development rely on it); otherwise only tokens
//! issued first (by the REST side, when it exists) are admitted.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use tokio::sync::oneshot;

use crate::server::codes::Close;
use crate::server::protocol::token_is_well_formed;

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

    /// `Ok` to start a session, or the close that refuses it.
    pub fn admit(&self, token: &str) -> Result<(), Close> {
        if !token_is_well_formed(token) {
            return Err(Close::MalformedToken);
        }
        let issued = self.issued.read().expect("the token set is never poisoned");
        if self.open || issued.contains(token) {
            Ok(())
        } else {
            Err(Close::UnknownSession)
        }
    }
}

/// The tokens with an open WebSocket. A second connection with a token in use replaces the
/// first (a reloaded page reconnecting to its session): the first is told to close.
#[derive(Debug, Default)]
pub struct ActiveTokens {
    by_token: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    next_claim: AtomicU64,
}

impl ActiveTokens {
    /// Takes `token` for a new connection. The receiver fires if a later connection takes it.
    pub fn claim(&self, token: &str) -> (u64, oneshot::Receiver<()>) {
        let claim = self.next_claim.fetch_add(1, Ordering::Relaxed);
        let (replaced, on_replaced) = oneshot::channel();
        let previous = self
            .by_token
            .lock()
            .expect("the token map is never poisoned")
            .insert(token.to_owned(), (claim, replaced));
        if let Some((_, tell_previous)) = previous {
            let _ = tell_previous.send(());
        }
        (claim, on_replaced)
    }

    /// Gives `token` back when its connection ends, unless a later one holds it now.
    pub fn release(&self, token: &str, claim: u64) {
        let mut by_token = self
            .by_token
            .lock()
            .expect("the token map is never poisoned");
        if by_token
            .get(token)
            .is_some_and(|(holder, _)| *holder == claim)
        {
            by_token.remove(token);
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
        assert_eq!(admission.admit("no spaces"), Err(Close::MalformedToken));
    }

    #[test]
    fn closed_mode_admits_only_issued_tokens() {
        let admission = Admission::new(false);
        assert_eq!(admission.admit("abc"), Err(Close::UnknownSession));
        admission.issue("abc");
        assert_eq!(admission.admit("abc"), Ok(()));
        assert_eq!(admission.admit("no/slashes"), Err(Close::MalformedToken));
    }

    #[test]
    fn a_second_connection_replaces_the_first() {
        let tokens = ActiveTokens::default();
        let (first, mut first_replaced) = tokens.claim("t");
        let (second, mut second_replaced) = tokens.claim("t");
        assert_eq!(first_replaced.try_recv(), Ok(()));
        // The first one leaving does not free the token the second holds.
        tokens.release("t", first);
        let (_, _third_replaced) = tokens.claim("t");
        assert_eq!(second_replaced.try_recv(), Ok(()));
        tokens.release("t", second);
    }
}
