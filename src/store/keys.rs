//! Which data keys the stored personal data is sealed with: what
//! `gdpr-intake keys status` prints, so that an operator knows whether a
//! key may leave the ring. Counted in the database ([`super::Store::key_use`],
//! one statement, [`super::sql::KEY_USE`], on either backend).

/// The sealed values under one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    /// The key id, or `None` for values sealed before key ids.
    pub key_id: Option<String>,
    /// Requests with at least one value under it.
    pub rows: i64,
    /// Values under it.
    pub values: i64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_statement_cuts_key_ids_at_their_length() {
        let cut = format!("substr(v, 4, {})", super::super::crypt::KEY_ID_LEN);
        assert!(super::super::sql::KEY_USE.contains(&cut));
    }
}
