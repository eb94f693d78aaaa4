//! Who may connect to a listener that has no protocol-level authentication of its own
//! (MQTT's CONNECT, HTTP's basic auth): configured user names and passwords, compared in time
//! that does not depend on where a password differs. With no users every client is admitted,
//! which the server allows only on a loopback listener.

/// The users of one listener.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: Vec<(String, String)>,
}

impl Users {
    /// Users from (name, password) pairs.
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { users: users.into_iter().collect() }
    }

    /// Whether no users are configured (every client is admitted).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether these credentials let a client in.
    pub fn admits(&self, username: Option<&str>, password: Option<&[u8]>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let (Some(username), Some(password)) = (username, password) else { return false };
        // Every user is compared, so the time taken says nothing of which name matched.
        self.users.iter().fold(false, |found, (name, secret)| found | (name == username && same_bytes(secret.as_bytes(), password)))
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::Users;

    #[test]
    fn only_a_matching_name_and_password_are_admitted() {
        let users = Users::new([("station-7".to_owned(), "s3cret".to_owned())]);
        assert!(users.admits(Some("station-7"), Some(b"s3cret")));
        assert!(!users.admits(Some("station-7"), Some(b"s3cre")));
        assert!(!users.admits(Some("station-8"), Some(b"s3cret")));
        assert!(!users.admits(None, None));
        assert!(Users::default().admits(None, None), "no users: anyone, on loopback only");
    }
}
