//! What Gatehouse does with accounts, clients and its own tokens, apart from how it is asked:
//! the auth API's handlers and the `gatehouse` command both call these functions.

pub mod claims;
pub mod clients;
pub mod users;
pub mod validate;

use crate::auth::password::HashError;
use crate::error::{ApiError, Error};
use crate::store::StoreError;

/// Why an operation did not happen: the input (the error names the field), the store, or
/// the password hasher. Handlers turn it into their error shape, the CLI prints it.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Invalid(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the password could not be hashed")]
    Hash(#[from] HashError),
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(e) => e,
            DomainError::Store(e) => e.into(),
            DomainError::Hash(e) => e.into(),
        }
    }
}

impl From<DomainError> for Error {
    fn from(e: DomainError) -> Self {
        Error::Api(e.into())
    }
}

/// A random UUID (v4): account, session and token ids.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
