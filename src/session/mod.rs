//! Browser sessions for apps with no login of their own: where a browser may be sent after
//! signing in ([`redirect`]) and the cookie that carries a session ([`cookie`]); the session
//! state and the sign-in pages build on them.

pub mod cookie;
pub mod redirect;
