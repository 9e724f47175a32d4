//! Browser sessions for apps with no login of their own: where a browser may be sent after
//! signing in ([`redirect`]); the cookie, its store and the sign-in pages build on it.

pub mod redirect;
